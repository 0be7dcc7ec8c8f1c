//! Built-in mobility: stationary stations, vehicles following a route with stops, random waypoint. Positions
//! advance in fixed steps (as in the ONE); after each step, pairs within an interface's range are in contact.
//!
//! Pairs are found through a uniform grid with cells as wide as the range, so a step costs O(nodes) rather
//! than O(nodes²): that is what makes 10,000 nodes feasible.

use dtn_core::rng::Rng;

use crate::scenario::{Movement, Scenario};
use crate::units::{Micros, Range};

/// A contact change on one interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkChange {
    /// Lower node index.
    pub a: usize,
    /// Higher node index.
    pub b: usize,
    /// Interface index.
    pub iface: usize,
    /// Up or down.
    pub up: bool,
}

#[derive(Debug, Clone)]
struct Mover {
    pos: (f64, f64),
    target: (f64, f64),
    speed: f64,
    /// Seconds of virtual time up to which the mover has been advanced.
    t: f64,
    pause_until: f64,
    /// Route position and direction.
    idx: usize,
    forward: bool,
    rng: Rng,
}

#[derive(Debug)]
struct Radio {
    range: f64,
    /// Nodes that have this interface and a place in the world.
    members: Vec<u32>,
    /// Pairs in contact after the last step, sorted.
    up: Vec<(u32, u32)>,
}

/// Positions of all nodes that have a movement, and the contacts between them.
#[derive(Debug)]
pub struct Mobility {
    movement: Vec<Movement>,
    movers: Vec<Option<Mover>>,
    world: (f64, f64),
    radios: Vec<Radio>,
    /// Grid origin and extent (covers the world and every fixed point).
    origin: (f64, f64),
    extent: (f64, f64),
    // Scratch space reused across steps.
    cells: Vec<u32>,
    order: Vec<u32>,
    key: Vec<u32>,
    pairs: Vec<(u32, u32)>,
}

fn uniform(rng: &mut Rng, lo: f64, hi: f64) -> f64 {
    let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
    lo + (hi - lo) * u
}

fn pick_micros(rng: &mut Rng, r: Range<Micros>) -> f64 {
    rng.between(r.0, r.1) as f64 / 1e6
}

impl Mobility {
    /// Mobility for a scenario, or `None` when no node has a movement.
    pub fn new(s: &Scenario, seed: u64) -> Option<Mobility> {
        if s.nodes.iter().all(|n| n.movement == Movement::None) {
            return None;
        }
        let mut lo = (0.0f64, 0.0f64);
        let mut hi = s.world;
        let mut movers = Vec::with_capacity(s.nodes.len());
        for (i, n) in s.nodes.iter().enumerate() {
            let mut rng = Rng::new(seed ^ 0x6d6f_6269_6c69_7479 ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let m = match &n.movement {
                Movement::None => None,
                Movement::Stationary { at } => Some(Mover {
                    pos: *at,
                    target: *at,
                    speed: 0.0,
                    t: 0.0,
                    pause_until: f64::INFINITY,
                    idx: 0,
                    forward: true,
                    rng,
                }),
                Movement::Route { points, speed, .. } => {
                    let sp = uniform(&mut rng, speed.0, speed.1);
                    // Starts by arriving at the first point, so it waits there if that is a stop.
                    Some(Mover {
                        pos: points[0],
                        target: points[0],
                        speed: sp,
                        t: 0.0,
                        pause_until: 0.0,
                        idx: 0,
                        forward: true,
                        rng,
                    })
                }
                Movement::RandomWaypoint { speed, .. } => {
                    let pos = (uniform(&mut rng, 0.0, s.world.0), uniform(&mut rng, 0.0, s.world.1));
                    let target = (uniform(&mut rng, 0.0, s.world.0), uniform(&mut rng, 0.0, s.world.1));
                    let sp = uniform(&mut rng, speed.0, speed.1);
                    Some(Mover { pos, target, speed: sp, t: 0.0, pause_until: 0.0, idx: 0, forward: true, rng })
                }
            };
            let fixed: Vec<(f64, f64)> = match &n.movement {
                Movement::Stationary { at } => vec![*at],
                Movement::Route { points, .. } => points.clone(),
                _ => Vec::new(),
            };
            for p in fixed {
                lo = (lo.0.min(p.0), lo.1.min(p.1));
                hi = (hi.0.max(p.0), hi.1.max(p.1));
            }
            movers.push(m);
        }
        let radios = s
            .interfaces
            .iter()
            .enumerate()
            .map(|(k, iface)| Radio {
                range: iface.range,
                members: if iface.range > 0.0 {
                    (0..s.nodes.len())
                        .filter(|&i| movers[i].is_some() && s.nodes[i].interfaces.contains(&k))
                        .map(|i| i as u32)
                        .collect()
                } else {
                    Vec::new()
                },
                up: Vec::new(),
            })
            .collect();
        Some(Mobility {
            movement: s.nodes.iter().map(|n| n.movement.clone()).collect(),
            movers,
            world: s.world,
            radios,
            origin: lo,
            extent: (hi.0 - lo.0, hi.1 - lo.1),
            cells: Vec::new(),
            order: Vec::new(),
            key: Vec::new(),
            pairs: Vec::new(),
        })
    }

    /// Where a node is (None for nodes without a movement).
    pub fn position(&self, node: usize) -> Option<(f64, f64)> {
        self.movers.get(node)?.as_ref().map(|m| m.pos)
    }

    /// Advances every node to `now` and appends the contact changes, in a fixed order.
    pub fn step(&mut self, now: Micros, out: &mut Vec<LinkChange>) {
        let t = now as f64 / 1e6;
        for (i, m) in self.movers.iter_mut().enumerate() {
            if let Some(m) = m {
                advance(m, &self.movement[i], self.world, t);
            }
        }
        for k in 0..self.radios.len() {
            if self.radios[k].members.len() < 2 {
                continue;
            }
            self.find_pairs(k);
            let radio = &mut self.radios[k];
            diff(&radio.up, &self.pairs, k, out);
            std::mem::swap(&mut radio.up, &mut self.pairs);
        }
    }

    /// Pairs of radio `k`'s members within its range, sorted, into `self.pairs`.
    fn find_pairs(&mut self, k: usize) {
        let radio = &self.radios[k];
        let r = radio.range;
        // Cells at least as wide as the range (so neighbours are in adjacent cells), and about as many as
        // there are nodes: more cells would cost more to clear each step than they save.
        let per_node = (self.extent.0 * self.extent.1 / radio.members.len() as f64).sqrt();
        let cell = r.max(per_node).max(self.extent.0 / 4096.0).max(self.extent.1 / 4096.0);
        let nx = ((self.extent.0 / cell).floor() as usize + 1).max(1);
        let ny = ((self.extent.1 / cell).floor() as usize + 1).max(1);
        let cell_of = |p: (f64, f64)| -> (usize, usize) {
            // Clamping keeps points outside the box in edge cells; two points within range still land in
            // adjacent cells.
            let cx = (((p.0 - self.origin.0) / cell).floor().max(0.0) as usize).min(nx - 1);
            let cy = (((p.1 - self.origin.1) / cell).floor().max(0.0) as usize).min(ny - 1);
            (cx, cy)
        };
        // Counting sort of members by cell.
        self.cells.clear();
        self.cells.resize(nx * ny + 1, 0);
        self.key.clear();
        for &i in &radio.members {
            let p = self.movers[i as usize].as_ref().map_or((0.0, 0.0), |m| m.pos);
            let (cx, cy) = cell_of(p);
            let c = (cy * nx + cx) as u32;
            self.key.push(c);
            self.cells[c as usize + 1] += 1;
        }
        for c in 1..self.cells.len() {
            self.cells[c] += self.cells[c - 1];
        }
        self.order.clear();
        self.order.resize(radio.members.len(), 0);
        let mut fill = self.cells.clone();
        for (j, &i) in radio.members.iter().enumerate() {
            let c = self.key[j] as usize;
            self.order[fill[c] as usize] = i;
            fill[c] += 1;
        }
        self.pairs.clear();
        let r2 = r * r;
        for (j, &i) in radio.members.iter().enumerate() {
            let c = self.key[j] as usize;
            let (cx, cy) = (c % nx, c / nx);
            let p = self.movers[i as usize].as_ref().map_or((0.0, 0.0), |m| m.pos);
            for y in cy.saturating_sub(1)..=(cy + 1).min(ny - 1) {
                for x in cx.saturating_sub(1)..=(cx + 1).min(nx - 1) {
                    let cc = y * nx + x;
                    for &o in &self.order[self.cells[cc] as usize..self.cells[cc + 1] as usize] {
                        if o <= i {
                            continue;
                        }
                        let q = self.movers[o as usize].as_ref().map_or((0.0, 0.0), |m| m.pos);
                        let (dx, dy) = (p.0 - q.0, p.1 - q.1);
                        if dx * dx + dy * dy <= r2 {
                            self.pairs.push((i, o));
                        }
                    }
                }
            }
        }
        self.pairs.sort_unstable();
    }
}

/// Appends ups for pairs in `new` only and downs for pairs in `old` only (both sorted).
fn diff(old: &[(u32, u32)], new: &[(u32, u32)], iface: usize, out: &mut Vec<LinkChange>) {
    let (mut i, mut j) = (0, 0);
    let change = |p: (u32, u32), up| LinkChange { a: p.0 as usize, b: p.1 as usize, iface, up };
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(a), Some(b)) if a == b => {
                i += 1;
                j += 1;
            }
            (Some(a), Some(b)) if a < b => {
                out.push(change(*a, false));
                i += 1;
            }
            (Some(a), None) => {
                out.push(change(*a, false));
                i += 1;
            }
            (_, Some(b)) => {
                out.push(change(*b, true));
                j += 1;
            }
            (None, None) => break,
        }
    }
}

fn advance(m: &mut Mover, how: &Movement, world: (f64, f64), to: f64) {
    // A route of identical points with no waiting would never use up time: bound the work per step.
    for _ in 0..10_000 {
        if m.t >= to {
            return;
        }
        if m.pause_until > m.t {
            if m.pause_until >= to {
                m.t = to;
                return;
            }
            m.t = m.pause_until;
        }
        let (dx, dy) = (m.target.0 - m.pos.0, m.target.1 - m.pos.1);
        let d = (dx * dx + dy * dy).sqrt();
        let need = if m.speed > 0.0 { d / m.speed } else { f64::INFINITY };
        if m.t + need > to {
            let f = (to - m.t) * m.speed / d;
            m.pos = (m.pos.0 + dx * f, m.pos.1 + dy * f);
            m.t = to;
            return;
        }
        m.t += need;
        m.pos = m.target;
        arrive(m, how, world);
    }
    m.t = to;
}

/// At a waypoint: choose the pause and the next target.
fn arrive(m: &mut Mover, how: &Movement, world: (f64, f64)) {
    match how {
        Movement::RandomWaypoint { speed, wait } => {
            m.pause_until = m.t + pick_micros(&mut m.rng, *wait);
            m.target = (uniform(&mut m.rng, 0.0, world.0), uniform(&mut m.rng, 0.0, world.1));
            m.speed = uniform(&mut m.rng, speed.0, speed.1);
        }
        Movement::Route { points, stops, wait, speed, cycle } => {
            if stops[m.idx] {
                m.pause_until = m.t + pick_micros(&mut m.rng, *wait);
            }
            let n = points.len();
            m.idx = if *cycle {
                (m.idx + 1) % n
            } else {
                if m.forward && m.idx == n - 1 || !m.forward && m.idx == 0 {
                    m.forward = !m.forward;
                }
                if m.forward { m.idx + 1 } else { m.idx - 1 }
            };
            m.target = points[m.idx];
            m.speed = uniform(&mut m.rng, speed.0, speed.1);
        }
        Movement::None | Movement::Stationary { .. } => m.pause_until = f64::INFINITY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_van_on_a_route_meets_each_station_in_turn() {
        let s = Scenario::parse(
            r#"
duration = "1h"
[interfaces.wifi]
rate = "250kB/s"
range = 20
[[group]]
name = "s"
count = 2
movement = { model = "stationary", positions = [[0, 0], [1000, 0]] }
[[group]]
name = "van"
movement = { model = "route", points = [[0, 0], [1000, 0]], wait = "60s", speed = 10 }
"#,
            "t.toml",
            Path::new("."),
        )
        .unwrap();
        let mut m = Mobility::new(&s, 1).unwrap();
        let mut changes = Vec::new();
        for t in 0..=330 {
            m.step(t * 1_000_000, &mut changes);
        }
        let ups: Vec<(usize, usize, bool)> = changes.iter().map(|c| (c.a, c.b, c.up)).collect();
        // Waits 60 s at s0, leaves (out of range 2 s later at 10 m/s), reaches s1 100 s later, and comes back.
        assert_eq!(ups, [(0, 2, true), (0, 2, false), (1, 2, true), (1, 2, false), (0, 2, true)]);
    }
}
