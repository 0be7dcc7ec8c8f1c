//! The house fed by a node: deliveries over the API's WebSocket with manual acknowledgement, each
//! acknowledged once [`House::receive`] has made it durable.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dtn_client::{Client, ClientError, Subscription};

use crate::house::{House, HouseError, Received, Seen};

/// What happened, for the caller to show.
#[derive(Debug, Clone)]
pub enum Note {
    /// Connected to the node and receiving.
    Connected,
    /// Lost the node; trying again.
    Disconnected(String),
    /// A delivery was taken.
    Received(Received),
    /// Analysis found something.
    Seen(Seen),
}

/// Why serving stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The archive failed: nothing more is acknowledged.
    #[error(transparent)]
    House(#[from] HouseError),
    /// The node refused the endpoint.
    #[error("{0}")]
    Node(String),
}

/// How often the index page is rewritten at most while frames come in.
const INDEX_EVERY: Duration = Duration::from_secs(2);

/// A payload longer than this cannot be a frame (the batch format's limit); it is read, cut and kept aside.
const MAX_PAYLOAD: usize = dtn_sensor::format::MAX_BATCH_BYTES + 1;

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Registers `endpoint` at the node whose API is at `api` and feeds every delivery to `house` until `stop` is
/// set, then analyses what still waits and writes the index. Losing the node (it restarted) is not an
/// error: it connects again. An archive failure is: the delivery in hand goes back to the node unacknowledged.
pub fn serve(
    api: SocketAddr,
    endpoint: &str,
    house: &mut House,
    stop: &AtomicBool,
    note: &mut dyn FnMut(Note),
) -> Result<(), ServeError> {
    let client = Client::new(api);
    let mut last_index = Instant::now();
    let mut result = Ok(());
    while !stop.load(Ordering::Relaxed) {
        let sub = client.register(endpoint).and_then(|()| client.subscribe(endpoint, true, MAX_PAYLOAD));
        let mut sub = match sub {
            Ok(s) => s,
            Err(ClientError::Node(m)) => {
                result = Err(ServeError::Node(m));
                break;
            }
            Err(e) => {
                note(Note::Disconnected(e.to_string()));
                wait_or_stop(stop, Duration::from_secs(1));
                continue;
            }
        };
        note(Note::Connected);
        match receive(&mut sub, house, stop, note, &mut last_index) {
            Ok(()) => {
                sub.close();
                break;
            }
            Err(Stop::Lost(e)) => note(Note::Disconnected(e.to_string())),
            Err(Stop::House(e)) => {
                sub.close();
                result = Err(e.into());
                break;
            }
        }
    }
    for s in house.finish()? {
        note(Note::Seen(s));
    }
    result
}

enum Stop {
    Lost(ClientError),
    House(HouseError),
}

fn receive(
    sub: &mut Subscription,
    house: &mut House,
    stop: &AtomicBool,
    note: &mut dyn FnMut(Note),
    last_index: &mut Instant,
) -> Result<(), Stop> {
    while !stop.load(Ordering::Relaxed) {
        let seen = match sub.next(Duration::from_millis(200)).map_err(Stop::Lost)? {
            Some(d) => {
                let (got, seen) = if d.truncated() {
                    let why = format!("{} bytes, larger than any frame (the first {} kept)", d.len, d.payload.len());
                    (house.keep_aside(&d.id, &d.payload, why).map_err(Stop::House)?, Vec::new())
                } else {
                    house.receive(&d.id, &d.payload, unix_ms()).map_err(Stop::House)?
                };
                sub.ack(&[&d.id]).map_err(Stop::Lost)?;
                note(Note::Received(got));
                seen
            }
            None => house.tick(unix_ms()).map_err(Stop::House)?,
        };
        for s in seen {
            note(Note::Seen(s));
        }
        if last_index.elapsed() >= INDEX_EVERY {
            house.write_index().map_err(Stop::House)?;
            *last_index = Instant::now();
        }
    }
    Ok(())
}

fn wait_or_stop(stop: &AtomicBool, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
}
