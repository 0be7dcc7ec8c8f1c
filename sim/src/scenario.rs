//! Scenario files (TOML): nodes in groups, their interfaces, routing, buffers and movement; traffic; where
//! contacts come from. See `docs/sim.md` for the reference.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range as StdRange;
use std::path::{Path, PathBuf};

use dtn_core::routing::ProphetParams;
use serde::Deserialize;
use toml::Spanned;

use crate::trace::{self, TraceEvent};
use crate::units::{Dur, Micros, Range, Rate, SECOND, Size, parse_duration, parse_size};

/// Why a scenario could not be loaded. Messages name the file and, where known, the line.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML, or a field of the wrong type or value (the TOML reader's message has the line).
    #[error("{path}: {detail}")]
    Syntax {
        /// The file.
        path: String,
        /// What is wrong, with line and column.
        detail: String,
    },
    /// Valid TOML that does not describe a usable scenario.
    #[error("{path}{}: {detail}", line.map(|l| format!(" line {l}")).unwrap_or_default())]
    Invalid {
        /// The file.
        path: String,
        /// 1-based line, when known.
        line: Option<usize>,
        /// What is wrong.
        detail: String,
    },
    /// A contact trace referenced by the scenario is bad.
    #[error(transparent)]
    Trace(#[from] trace::TraceError),
}

/// A radio type: rate, range and propagation delay. Two hosts connect over it when both have it and are
/// within its range.
#[derive(Debug, Clone, PartialEq)]
pub struct Interface {
    /// Its name in the scenario.
    pub name: String,
    /// Bytes per second.
    pub rate: u64,
    /// Metres.
    pub range: f64,
    /// Propagation delay.
    pub delay: Micros,
}

/// Which routing agent a node runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Routing {
    /// Epidemic.
    Epidemic,
    /// Binary spray-and-wait with L copies.
    SprayAndWait {
        /// L.
        copies: u32,
    },
    /// PRoPHET.
    Prophet(ProphetParams),
    /// Contact-plan routing over the scenario's scheduled contacts.
    ContactPlan,
}

impl Routing {
    /// Short name, as the engine's agents call themselves.
    pub fn name(&self) -> &'static str {
        match self {
            Routing::Epidemic => "epidemic",
            Routing::SprayAndWait { .. } => "spray-and-wait",
            Routing::Prophet(_) => "prophet",
            Routing::ContactPlan => "contact-plan",
        }
    }
}

/// How a node moves (for contacts from mobility).
#[derive(Debug, Clone, PartialEq)]
pub enum Movement {
    /// Never moves; no contacts from mobility unless others come by.
    None,
    /// Stands at a position.
    Stationary {
        /// Where, in metres.
        at: (f64, f64),
    },
    /// Follows a route of points, waiting at stops.
    Route {
        /// The route.
        points: Vec<(f64, f64)>,
        /// Whether each point is a stop.
        stops: Vec<bool>,
        /// Waiting time at a stop.
        wait: Range<Micros>,
        /// Speed, metres per second.
        speed: Range<f64>,
        /// After the last point: back to the first (true) or back along the route (false).
        cycle: bool,
    },
    /// Random waypoint within the world.
    RandomWaypoint {
        /// Speed, metres per second.
        speed: Range<f64>,
        /// Pause at each waypoint.
        wait: Range<Micros>,
    },
}

/// One node.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    /// Its name (`p0`, `van`).
    pub name: String,
    /// Index of its group.
    pub group: usize,
    /// Indices into [`Scenario::interfaces`].
    pub interfaces: Vec<usize>,
    /// Routing agent.
    pub routing: Routing,
    /// Buffer (store quota) in bytes.
    pub buffer: u64,
    /// Whether the node takes custody.
    pub custody: bool,
    /// Movement.
    pub movement: Movement,
}

/// A traffic generator.
#[derive(Debug, Clone, PartialEq)]
pub struct Generator {
    /// Nodes that create messages.
    pub from: Vec<usize>,
    /// Destinations drawn from.
    pub to: Vec<usize>,
    /// Time between messages.
    pub interval: Range<Micros>,
    /// Message size in bytes.
    pub size: Range<u64>,
    /// Message lifetime.
    pub lifetime: Micros,
    /// One generator per node in `from` (true), or one for the set that draws a source each time.
    pub per_node: bool,
    /// When it runs.
    pub window: StdRange<Micros>,
}

/// One message of an explicit list.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageSpec {
    /// Creation time.
    pub time: Micros,
    /// The user's name for it.
    pub id: String,
    /// Size in bytes.
    pub size: u64,
    /// Source node.
    pub from: usize,
    /// Destination node.
    pub to: usize,
    /// Lifetime.
    pub ttl: Micros,
}

/// A scheduled contact.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedContact {
    /// One end.
    pub a: usize,
    /// The other end.
    pub b: usize,
    /// When it comes up.
    pub start: Micros,
    /// When it goes down.
    pub end: Micros,
    /// Bytes per second.
    pub rate: u64,
    /// Propagation delay.
    pub delay: Micros,
}

/// A sweep: the scenario run for each seed under each variant.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Variants (none: the scenario as written).
    pub variants: Vec<Variant>,
}

/// Settings a sweep variant overrides on every node.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Variant {
    /// Its name in the summary.
    pub name: String,
    /// Routing agent for every node.
    pub routing: Option<Routing>,
    /// Buffer for every node.
    pub buffer: Option<u64>,
    /// Custody for every node.
    pub custody: Option<bool>,
}

/// A loaded, checked scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Name, for reports.
    pub name: String,
    /// Simulated time.
    pub duration: Micros,
    /// Seed (overridable on the command line).
    pub seed: u64,
    /// Messages created before this are not counted (as the ONE's warm-up).
    pub warmup: Micros,
    /// Mobility update interval.
    pub step: Micros,
    /// Buffer-occupancy sampling interval.
    pub sample: Micros,
    /// World size in metres (random waypoint).
    pub world: (f64, f64),
    /// Radio types.
    pub interfaces: Vec<Interface>,
    /// Group names, in order.
    pub groups: Vec<String>,
    /// Nodes, in address order (group by group, as the ONE numbers hosts).
    pub nodes: Vec<NodeSpec>,
    /// Traffic generators.
    pub traffic: Vec<Generator>,
    /// Explicit messages, by time.
    pub messages: Vec<MessageSpec>,
    /// Contact trace events (ONE format), by time.
    pub trace: Vec<TraceEvent>,
    /// Scheduled contacts.
    pub plan: Vec<PlannedContact>,
    /// Sweep settings.
    pub sweep: Option<Sweep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    name: Option<String>,
    duration: Dur,
    seed: Option<u64>,
    warmup: Option<Dur>,
    step: Option<Dur>,
    sample: Option<Dur>,
    world: Option<[f64; 2]>,
    #[serde(default)]
    interfaces: BTreeMap<String, IfaceFile>,
    #[serde(default, rename = "group")]
    groups: Vec<GroupFile>,
    #[serde(default)]
    traffic: Vec<TrafficFile>,
    #[serde(default, rename = "message")]
    messages: Vec<MessageFile>,
    messages_file: Option<String>,
    #[serde(default)]
    contacts: ContactsFile,
    sweep: Option<SweepFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IfaceFile {
    rate: Rate,
    #[serde(default)]
    range: f64,
    #[serde(default)]
    delay: Dur,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupFile {
    name: Spanned<String>,
    #[serde(default = "one")]
    count: usize,
    #[serde(default)]
    interfaces: Vec<Spanned<String>>,
    routing: Option<RoutingFile>,
    buffer: Option<Size>,
    #[serde(default)]
    custody: bool,
    movement: Option<Spanned<MovementFile>>,
}

fn one() -> usize {
    1
}

#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RoutingFile {
    Name(String),
    Table(RoutingTable),
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RoutingTable {
    agent: String,
    copies: Option<u32>,
    p_encounter_max: Option<f64>,
    p_encounter_first: Option<f64>,
    beta: Option<f64>,
    gamma: Option<f64>,
    i_typ: Option<Dur>,
    time_unit: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(tag = "model", rename_all = "kebab-case", deny_unknown_fields)]
enum MovementFile {
    Stationary {
        position: Option<[f64; 2]>,
        positions: Option<Vec<[f64; 2]>>,
    },
    Route {
        points: Vec<[f64; 2]>,
        stops: Option<Vec<usize>>,
        #[serde(default)]
        wait: Option<Range<Dur>>,
        speed: Range<f64>,
        #[serde(default, rename = "loop")]
        cycle: bool,
    },
    RandomWaypoint {
        speed: Range<f64>,
        wait: Option<Range<Dur>>,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TrafficFile {
    from: Vec<Spanned<String>>,
    to: Vec<Spanned<String>>,
    interval: Range<Dur>,
    size: Range<Size>,
    lifetime: Option<Dur>,
    #[serde(default)]
    per_node: bool,
    start: Option<Dur>,
    end: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MessageFile {
    time: Dur,
    id: String,
    size: Size,
    from: Spanned<String>,
    to: Spanned<String>,
    ttl: Option<Dur>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ContactsFile {
    trace: Option<String>,
    #[serde(default)]
    plan: Vec<PlanFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanFile {
    a: Spanned<String>,
    b: Spanned<String>,
    start: Dur,
    end: Dur,
    rate: Rate,
    #[serde(default)]
    delay: Dur,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    seeds: Vec<u64>,
    #[serde(default, rename = "variant")]
    variants: Vec<VariantFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VariantFile {
    name: String,
    routing: Option<RoutingFile>,
    buffer: Option<Size>,
    custody: Option<bool>,
}

/// Default lifetime of generated messages when a generator sets none.
const DEFAULT_LIFETIME: Micros = 24 * 3600 * SECOND;
/// Default buffer, as the ONE's default scenario.
const DEFAULT_BUFFER: u64 = 5_000_000;

impl Scenario {
    /// Loads a scenario file; paths in it (trace, message list) are relative to the file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ScenarioError::Io { path: path.display().to_string(), source })?;
        Scenario::parse(&text, &path.display().to_string(), path.parent().unwrap_or(Path::new(".")))
    }

    /// Parses scenario text; `name` labels errors and `base` resolves relative paths.
    pub fn parse(text: &str, name: &str, base: &Path) -> Result<Scenario, ScenarioError> {
        let file: File = toml::from_str(text)
            .map_err(|e| ScenarioError::Syntax { path: name.to_string(), detail: e.to_string() })?;
        Resolver { text, path: name, base }.resolve(file)
    }
}

struct Resolver<'a> {
    text: &'a str,
    path: &'a str,
    base: &'a Path,
}

impl Resolver<'_> {
    fn err(&self, span: Option<StdRange<usize>>, detail: impl Into<String>) -> ScenarioError {
        let line = span.map(|s| self.text[..s.start.min(self.text.len())].matches('\n').count() + 1);
        ScenarioError::Invalid { path: self.path.to_string(), line, detail: detail.into() }
    }

    fn resolve(&self, f: File) -> Result<Scenario, ScenarioError> {
        if f.duration.0 == 0 {
            return Err(self.err(None, "duration must be more than zero"));
        }
        let interfaces: Vec<Interface> = f
            .interfaces
            .iter()
            .map(|(name, i)| Interface { name: name.clone(), rate: i.rate.0, range: i.range, delay: i.delay.0 })
            .collect();
        let iface_index: HashMap<&str, usize> =
            interfaces.iter().enumerate().map(|(i, x)| (x.name.as_str(), i)).collect();
        if f.groups.is_empty() {
            return Err(self.err(None, "no [[group]] of nodes"));
        }
        let mut nodes = Vec::new();
        let mut groups = Vec::new();
        for (gi, g) in f.groups.iter().enumerate() {
            let gname = g.name.get_ref().clone();
            if groups.contains(&gname) {
                return Err(self.err(Some(g.name.span()), format!("group {gname:?} defined twice")));
            }
            if g.count == 0 {
                return Err(self.err(Some(g.name.span()), format!("group {gname:?} has count 0")));
            }
            let mut ifaces = Vec::new();
            for i in &g.interfaces {
                let idx = iface_index.get(i.get_ref().as_str()).copied().ok_or_else(|| {
                    self.err(
                        Some(i.span()),
                        format!("unknown interface {:?} (define it under [interfaces])", i.get_ref()),
                    )
                })?;
                ifaces.push(idx);
            }
            if ifaces.is_empty() {
                if interfaces.len() != 1 {
                    return Err(self.err(
                        Some(g.name.span()),
                        format!("group {gname:?} names no interfaces, and there is not exactly one to default to"),
                    ));
                }
                ifaces.push(0);
            }
            let routing = match &g.routing {
                Some(r) => self.routing(r, Some(g.name.span()))?,
                None => Routing::Epidemic,
            };
            let movements = match &g.movement {
                None => vec![Movement::None; g.count],
                Some(m) => self.movement(m, g.count)?,
            };
            for (k, movement) in movements.into_iter().enumerate() {
                let name = if g.count == 1 { gname.clone() } else { format!("{gname}{k}") };
                nodes.push(NodeSpec {
                    name,
                    group: gi,
                    interfaces: ifaces.clone(),
                    routing: routing.clone(),
                    buffer: g.buffer.map_or(DEFAULT_BUFFER, |b| b.0),
                    custody: g.custody,
                    movement,
                });
            }
            groups.push(gname);
        }
        let mut by_name = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            if by_name.insert(n.name.clone(), i).is_some() {
                return Err(self.err(None, format!("two nodes are called {:?}; rename a group", n.name)));
            }
        }
        let names = Names { by_name: &by_name, groups: &groups, nodes: &nodes };

        let mut traffic = Vec::new();
        for t in &f.traffic {
            let from = self.hosts(&names, &t.from)?;
            let to = self.hosts(&names, &t.to)?;
            let interval = Range(t.interval.0.0, t.interval.1.0);
            if interval.1 == 0 {
                return Err(self.err(t.from.first().map(|s| s.span()), "traffic interval must be more than zero"));
            }
            traffic.push(Generator {
                from,
                to,
                interval,
                size: Range(t.size.0.0.max(1), t.size.1.0.max(1)),
                lifetime: t.lifetime.map_or(DEFAULT_LIFETIME, |d| d.0),
                per_node: t.per_node,
                window: t.start.map_or(0, |d| d.0)..t.end.map_or(f.duration.0, |d| d.0),
            });
        }

        let mut messages = Vec::new();
        for m in &f.messages {
            let from = self.host(&names, &m.from)?;
            let to = self.host(&names, &m.to)?;
            messages.push(MessageSpec {
                time: m.time.0,
                id: m.id.clone(),
                size: m.size.0.max(1),
                from,
                to,
                ttl: m.ttl.map_or(DEFAULT_LIFETIME, |d| d.0),
            });
        }
        if let Some(file) = &f.messages_file {
            let path = self.base.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|source| ScenarioError::Io { path: path.display().to_string(), source })?;
            messages.extend(parse_message_list(&text, &path.display().to_string(), &by_name)?);
        }
        let mut seen = std::collections::HashSet::new();
        for m in &messages {
            if !seen.insert(m.id.as_str()) {
                return Err(self.err(None, format!("message id {:?} is used twice", m.id)));
            }
            if m.from == m.to {
                return Err(self.err(None, format!("message {:?} is from and to the same node", m.id)));
            }
        }
        messages.sort_by_key(|m| m.time);

        let trace = match &f.contacts.trace {
            Some(p) => {
                let path: PathBuf = self.base.join(p);
                trace::load(&path, &by_name, nodes.len())?
            }
            None => Vec::new(),
        };
        let mut plan = Vec::new();
        for p in &f.contacts.plan {
            let (a, b) = (self.host(&names, &p.a)?, self.host(&names, &p.b)?);
            if a == b {
                return Err(self.err(Some(p.a.span()), "a contact needs two different nodes"));
            }
            if p.end.0 <= p.start.0 {
                return Err(self.err(Some(p.a.span()), "a contact must end after it starts"));
            }
            plan.push(PlannedContact { a, b, start: p.start.0, end: p.end.0, rate: p.rate.0, delay: p.delay.0 });
        }
        let sweep = match &f.sweep {
            None => None,
            Some(s) => {
                let mut variants = Vec::new();
                for v in &s.variants {
                    variants.push(Variant {
                        name: v.name.clone(),
                        routing: v.routing.as_ref().map(|r| self.routing(r, None)).transpose()?,
                        buffer: v.buffer.map(|b| b.0),
                        custody: v.custody,
                    });
                }
                if s.seeds.is_empty() {
                    return Err(self.err(None, "[sweep] needs at least one seed"));
                }
                Some(Sweep { seeds: s.seeds.clone(), variants })
            }
        };
        let uses_plan = nodes.iter().any(|n| n.routing == Routing::ContactPlan);
        if uses_plan && plan.is_empty() {
            return Err(self.err(None, "contact-plan routing needs scheduled contacts ([[contacts.plan]])"));
        }
        let world = f.world.map_or((1000.0, 1000.0), |[w, h]| (w, h));
        if !(world.0 > 0.0 && world.1 > 0.0) {
            return Err(self.err(None, "world must have a positive width and height"));
        }
        Ok(Scenario {
            name: f.name.clone().unwrap_or_else(|| "scenario".into()),
            duration: f.duration.0,
            seed: f.seed.unwrap_or(1),
            warmup: f.warmup.map_or(0, |d| d.0),
            step: f.step.map_or(SECOND, |d| d.0.max(1000)),
            sample: f.sample.map_or(60 * SECOND, |d| d.0.max(SECOND)),
            world,
            interfaces,
            groups,
            nodes,
            traffic,
            messages,
            trace,
            plan,
            sweep,
        })
    }

    fn routing(&self, r: &RoutingFile, span: Option<StdRange<usize>>) -> Result<Routing, ScenarioError> {
        let t = match r {
            RoutingFile::Name(n) => RoutingTable {
                agent: n.clone(),
                copies: None,
                p_encounter_max: None,
                p_encounter_first: None,
                beta: None,
                gamma: None,
                i_typ: None,
                time_unit: None,
            },
            RoutingFile::Table(t) => t.clone(),
        };
        Ok(match t.agent.as_str() {
            "epidemic" => Routing::Epidemic,
            "spray-and-wait" | "spray" => Routing::SprayAndWait { copies: t.copies.unwrap_or(6).max(1) },
            "prophet" => {
                let d = ProphetParams::default();
                Routing::Prophet(ProphetParams {
                    p_encounter_max: t.p_encounter_max.unwrap_or(d.p_encounter_max),
                    p_encounter_first: t.p_encounter_first.unwrap_or(d.p_encounter_first),
                    beta: t.beta.unwrap_or(d.beta),
                    gamma: t.gamma.unwrap_or(d.gamma),
                    i_typ_ms: t.i_typ.map_or(d.i_typ_ms, |x| x.0 / 1000),
                    time_unit_ms: t.time_unit.map_or(d.time_unit_ms, |x| x.0 / 1000),
                    ..d
                })
            }
            "contact-plan" => Routing::ContactPlan,
            other => {
                return Err(self.err(
                    span,
                    format!("unknown routing agent {other:?} (epidemic, spray-and-wait, prophet or contact-plan)"),
                ));
            }
        })
    }

    fn movement(&self, m: &Spanned<MovementFile>, count: usize) -> Result<Vec<Movement>, ScenarioError> {
        let span = Some(m.span());
        let speed_ok = |s: &Range<f64>| s.0 > 0.0 && s.0.is_finite() && s.1.is_finite();
        Ok(match m.get_ref() {
            MovementFile::Stationary { position, positions } => match (position, positions) {
                (Some([x, y]), None) => vec![Movement::Stationary { at: (*x, *y) }; count],
                (None, Some(ps)) if ps.len() == count => {
                    ps.iter().map(|[x, y]| Movement::Stationary { at: (*x, *y) }).collect()
                }
                (None, Some(ps)) => {
                    return Err(self.err(span, format!("{} positions for a group of {count} nodes", ps.len())));
                }
                _ => return Err(self.err(span, "stationary movement needs `position` or `positions`")),
            },
            MovementFile::Route { points, stops, wait, speed, cycle } => {
                if points.len() < 2 {
                    return Err(self.err(span, "a route needs at least two points"));
                }
                if !speed_ok(speed) {
                    return Err(self.err(span, "route speed must be positive"));
                }
                let mut is_stop = vec![stops.is_none(); points.len()];
                for &s in stops.iter().flatten() {
                    *is_stop
                        .get_mut(s)
                        .ok_or_else(|| self.err(span.clone(), format!("stop {s} is not a point index")))? = true;
                }
                let wait = wait.map_or(Range(0, 0), |w| Range(w.0.0, w.1.0));
                let pts: Vec<(f64, f64)> = points.iter().map(|[x, y]| (*x, *y)).collect();
                vec![Movement::Route { points: pts, stops: is_stop, wait, speed: *speed, cycle: *cycle }; count]
            }
            MovementFile::RandomWaypoint { speed, wait } => {
                if !speed_ok(speed) {
                    return Err(self.err(span, "random-waypoint speed must be positive"));
                }
                let wait = wait.map_or(Range(0, 0), |w| Range(w.0.0, w.1.0));
                vec![Movement::RandomWaypoint { speed: *speed, wait }; count]
            }
        })
    }

    fn host(&self, names: &Names<'_>, s: &Spanned<String>) -> Result<usize, ScenarioError> {
        names
            .by_name
            .get(s.get_ref().as_str())
            .copied()
            .ok_or_else(|| self.err(Some(s.span()), format!("unknown node {:?}", s.get_ref())))
    }

    /// Node or group names, or `*` for every node.
    fn hosts(&self, names: &Names<'_>, list: &[Spanned<String>]) -> Result<Vec<usize>, ScenarioError> {
        let mut out = Vec::new();
        for s in list {
            let name = s.get_ref().as_str();
            if name == "*" {
                out.extend(0..names.nodes.len());
            } else if let Some(g) = names.groups.iter().position(|g| g == name) {
                out.extend(names.nodes.iter().enumerate().filter(|(_, n)| n.group == g).map(|(i, _)| i));
            } else if let Some(&i) = names.by_name.get(name) {
                out.push(i);
            } else {
                return Err(self.err(Some(s.span()), format!("unknown node or group {name:?}")));
            }
        }
        out.sort_unstable();
        out.dedup();
        if out.is_empty() {
            return Err(self.err(list.first().map(|s| s.span()), "empty node list"));
        }
        Ok(out)
    }
}

struct Names<'a> {
    by_name: &'a HashMap<String, usize>,
    groups: &'a [String],
    nodes: &'a [NodeSpec],
}

/// Reads an explicit message list: CSV lines `time,id,size,from,to,ttl` (time and ttl with units or in
/// seconds, size with units or in bytes); `#` comments and a header line starting with `time` are skipped.
pub fn parse_message_list(
    text: &str,
    path: &str,
    by_name: &HashMap<String, usize>,
) -> Result<Vec<MessageSpec>, ScenarioError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() || line.starts_with("time") {
            continue;
        }
        let err = |detail: String| ScenarioError::Invalid { path: path.to_string(), line: Some(i + 1), detail };
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let [time, id, size, from, to, ttl] = f.as_slice() else {
            return Err(err(format!("expected `time,id,size,from,to,ttl`, got {} fields", f.len())));
        };
        let node = |n: &str| by_name.get(n).copied().ok_or_else(|| err(format!("unknown node {n:?}")));
        out.push(MessageSpec {
            time: parse_duration(time).map_err(err)?,
            id: id.to_string(),
            size: parse_size(size).map_err(err)?.max(1),
            from: node(from)?,
            to: node(to)?,
            ttl: parse_duration(ttl).map_err(err)?,
        });
    }
    Ok(out)
}

impl Scenario {
    /// Replaces the scenario's contact sources by a trace in the ONE's format: nodes keep their settings but
    /// no longer move, and scheduled contacts are dropped.
    pub fn replay_trace(&mut self, path: &Path) -> Result<(), ScenarioError> {
        let names: HashMap<String, usize> = self.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        self.trace = trace::load(path, &names, self.nodes.len())?;
        self.plan.clear();
        for n in &mut self.nodes {
            n.movement = Movement::None;
            if n.routing == Routing::ContactPlan {
                n.routing = Routing::Epidemic;
            }
        }
        Ok(())
    }

    /// The scenario with a sweep variant's overrides applied to every node.
    pub fn with_variant(&self, v: &Variant) -> Scenario {
        let mut s = self.clone();
        for n in &mut s.nodes {
            if let Some(r) = &v.routing {
                n.routing = r.clone();
            }
            if let Some(b) = v.buffer {
                n.buffer = b;
            }
            if let Some(c) = v.custody {
                n.custody = c;
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(text, "test.toml", Path::new("."))
    }

    const BASE: &str = r#"
duration = "1h"
[interfaces.wifi]
rate = "250kB/s"
range = 10
[[group]]
name = "a"
count = 2
"#;

    #[test]
    fn groups_become_numbered_nodes_in_order() {
        let s = parse(&format!("{BASE}\n[[group]]\nname = \"van\"\nbuffer = \"50MB\"\nrouting = {{ agent = \"spray-and-wait\", copies = 4 }}\n")).unwrap();
        let names: Vec<&str> = s.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["a0", "a1", "van"]);
        assert_eq!(s.nodes[2].buffer, 50_000_000);
        assert_eq!(s.nodes[2].routing, Routing::SprayAndWait { copies: 4 });
        assert_eq!(s.nodes[0].buffer, DEFAULT_BUFFER);
    }

    #[test]
    fn bad_references_name_the_line() {
        let text = format!("{BASE}\n[[traffic]]\nfrom = [\"a\"]\nto = [\"nobody\"]\ninterval = 30\nsize = \"1MB\"\n");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("line 12") && e.contains("nobody"), "{e}");
        let e = parse(&BASE.replace("250kB/s", "250 parsecs")).unwrap_err().to_string();
        assert!(e.contains("line 4") && e.contains("rate"), "{e}");
        let e = parse(&format!("{BASE}\nroute = 3\n")).unwrap_err().to_string();
        assert!(e.contains("route"), "{e}");
    }

    #[test]
    fn message_lists_report_bad_lines() {
        let names: HashMap<String, usize> = [("a".to_string(), 0), ("b".to_string(), 1)].into();
        let ok = parse_message_list("time,id,size,from,to,ttl\n10,M1,1MB,a,b,1h\n", "m.csv", &names).unwrap();
        assert_eq!(ok[0].size, 1_000_000);
        assert_eq!(ok[0].ttl, 3600 * SECOND);
        let e = parse_message_list("10,M1,1MB,a,b,1h\n20,M2,1MB,a,c,1h\n", "m.csv", &names).unwrap_err();
        assert!(e.to_string().contains("m.csv line 2"), "{e}");
    }
}
