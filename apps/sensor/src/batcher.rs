//! Collecting one sensor's readings into numbered batches.
//!
//! A batch's number is given when it is closed, not when its first reading arrives: readings lost in a crash
//! before closing then leave no hole in the numbering. A station that keeps [`Batcher::next_seq`] across
//! restarts starts the next batcher there, so numbers never repeat.

use crate::format::{Batch, Clock, Reading, SensorKind};
use crate::stills::Still;

/// When a batch is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSettings {
    /// Close once it holds this many readings (at least 1).
    pub batch_readings: usize,
    /// Close once its oldest reading is this old (ms), so a slow sensor's readings do not wait for hours.
    pub max_age_ms: u64,
}

impl Default for BatchSettings {
    fn default() -> Self {
        BatchSettings { batch_readings: 60, max_age_ms: 600_000 }
    }
}

/// Batches of one sensor of one station.
#[derive(Debug, Clone)]
pub struct Batcher {
    station: String,
    sensor: String,
    kind: SensorKind,
    clock: Clock,
    settings: BatchSettings,
    next_seq: u64,
    pending: Vec<Reading>,
}

impl Batcher {
    /// A batcher whose first batch is numbered `first_seq`.
    pub fn new(
        station: impl Into<String>,
        sensor: impl Into<String>,
        kind: SensorKind,
        clock: Clock,
        settings: BatchSettings,
        first_seq: u64,
    ) -> Self {
        let settings = BatchSettings { batch_readings: settings.batch_readings.max(1), ..settings };
        Batcher {
            station: station.into(),
            sensor: sensor.into(),
            kind,
            clock,
            settings,
            next_seq: first_seq,
            pending: Vec::new(),
        }
    }

    /// The sensor's name.
    pub fn sensor(&self) -> &str {
        &self.sensor
    }

    /// What the sensor measures.
    pub fn kind(&self) -> SensorKind {
        self.kind
    }

    /// The number the next closed batch gets: what to persist to carry on after a restart.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Numbers the next closed batch `seq`. For restoring persisted numbering before the first batch.
    pub fn set_next_seq(&mut self, seq: u64) {
        self.next_seq = seq;
    }

    /// How many readings wait in the open batch.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Adds a reading taken at `t` (on the batcher's clock); returns the batch this closes, if any.
    ///
    /// A reading older than the previous one (the clock was set back) first closes the open batch, because a
    /// batch's readings are in time order.
    ///
    /// # Panics
    /// If `values` does not have one value per axis of the kind, or the kind is a camera (use
    /// [`Batcher::push_still`]): both are mistakes of the caller, not of the input.
    pub fn push(&mut self, t: u64, values: Vec<f32>) -> Option<Batch> {
        assert!(self.kind != SensorKind::CameraStill, "camera stills go through push_still");
        assert_eq!(values.len(), self.kind.axes().len(), "one value per axis of {:?}", self.kind);
        let earlier = match self.pending.last() {
            Some(last) if t < last.t => {
                let last_t = last.t;
                self.close(last_t)
            }
            _ => None,
        };
        self.pending.push(Reading { t, values });
        let full = self.pending.len() >= self.settings.batch_readings;
        let closed = if full || self.too_old(t) { self.close(t) } else { None };
        // At most one of the two is a batch: readings were pending only if batches hold more than one reading
        // and the maximum age is above zero, and then a lone new reading does not close its batch.
        earlier.or(closed)
    }

    /// Closes the open batch if its oldest reading is at least the maximum age old at `now`.
    pub fn poll(&mut self, now: u64) -> Option<Batch> {
        if self.too_old(now) { self.close(now) } else { None }
    }

    /// Closes the open batch, however few readings it has (e.g. on shutdown).
    pub fn flush(&mut self, now: u64) -> Option<Batch> {
        self.close(now)
    }

    /// A camera batch: one reading (width, height) and the JPEG, closed at once.
    ///
    /// # Panics
    /// If the kind is not [`SensorKind::CameraStill`].
    pub fn push_still(&mut self, t: u64, still: Still) -> Batch {
        assert_eq!(self.kind, SensorKind::CameraStill, "only a camera batcher takes stills");
        let mut batch = self.open_batch(t);
        batch.readings = vec![Reading { t, values: vec![still.width as f32, still.height as f32] }];
        batch.image = Some(still.jpeg);
        batch
    }

    fn too_old(&self, now: u64) -> bool {
        self.pending.first().is_some_and(|first| now.saturating_sub(first.t) >= self.settings.max_age_ms)
    }

    fn close(&mut self, now: u64) -> Option<Batch> {
        if self.pending.is_empty() {
            return None;
        }
        let mut batch = self.open_batch(now);
        batch.readings = std::mem::take(&mut self.pending);
        Some(batch)
    }

    fn open_batch(&mut self, now: u64) -> Batch {
        let mut batch = Batch::new(&self.station, &self.sensor, self.kind, self.next_seq, self.clock);
        batch.created = now;
        self.next_seq += 1;
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batcher(batch_readings: usize, max_age_ms: u64, first_seq: u64) -> Batcher {
        let settings = BatchSettings { batch_readings, max_age_ms };
        Batcher::new("hill-1", "sim/temperature", SensorKind::Temperature, Clock::Uptime, settings, first_seq)
    }

    #[test]
    fn batches_close_by_count_and_are_numbered_from_the_first_seq() {
        let mut b = batcher(3, 1_000_000, 41);
        let mut out = Vec::new();
        for i in 0..10u64 {
            out.extend(b.push(i * 1000, vec![i as f32]));
        }
        assert_eq!(out.iter().map(|b| b.seq).collect::<Vec<_>>(), [41, 42, 43]);
        assert_eq!(out[1].readings.iter().map(|r| r.t).collect::<Vec<_>>(), [3000, 4000, 5000]);
        assert_eq!(out[1].created, 5000);
        assert!(out.iter().all(|b| Batch::decode(&b.encode()).as_ref() == Ok(b)));
        assert_eq!((b.pending(), b.next_seq()), (1, 44));
    }

    #[test]
    fn batches_close_by_age() {
        let mut b = batcher(100, 60_000, 0);
        assert!(b.push(0, vec![1.0]).is_none());
        assert!(b.push(59_999, vec![2.0]).is_none());
        assert!(b.poll(59_999).is_none());
        // No new reading: the age alone closes it.
        let closed = b.poll(60_000).expect("aged");
        assert_eq!((closed.seq, closed.created, closed.readings.len()), (0, 60_000, 2));
        // A reading arriving late closes its batch itself.
        assert!(b.push(100_000, vec![3.0]).is_none());
        let closed = b.push(200_000, vec![4.0]).expect("aged");
        assert_eq!((closed.seq, closed.created, closed.readings.len()), (1, 200_000, 2));
        assert!(b.poll(10_000_000).is_none());
    }

    #[test]
    fn flush_closes_a_partial_batch_and_nothing_twice() {
        let mut b = batcher(10, 1_000_000, 5);
        assert!(b.flush(0).is_none());
        b.push(1, vec![1.0]);
        b.push(2, vec![2.0]);
        let f = b.flush(3).expect("partial");
        assert_eq!((f.seq, f.created, f.readings.len()), (5, 3, 2));
        assert!(b.flush(4).is_none());
        assert_eq!(b.next_seq(), 6);
    }

    #[test]
    fn a_clock_set_back_starts_a_new_batch() {
        let mut b = batcher(10, 1_000_000, 0);
        b.push(5000, vec![1.0]);
        b.push(6000, vec![2.0]);
        let closed = b.push(1000, vec![3.0]).expect("set back");
        assert_eq!((closed.readings.len(), closed.created), (2, 6000));
        assert_eq!(b.pending(), 1);
        let mut one = batcher(1, 1_000_000, 0);
        assert_eq!(one.push(5, vec![1.0]).map(|b| b.seq), Some(0));
        assert_eq!(one.push(1, vec![1.0]).map(|b| b.seq), Some(1));
    }

    #[test]
    fn a_still_is_a_batch_of_its_own() {
        let mut b = Batcher::new("house", "cam0", SensorKind::CameraStill, Clock::Unix, BatchSettings::default(), 9);
        let still = Still { jpeg: vec![0xff, 0xd8, 0xff, 0xd9], width: 640, height: 480 };
        let batch = b.push_still(1234, still);
        assert_eq!((batch.seq, batch.created), (9, 1234));
        assert_eq!(batch.readings, vec![Reading { t: 1234, values: vec![640.0, 480.0] }]);
        assert_eq!(Batch::decode(&batch.encode()), Ok(batch));
        assert_eq!(b.next_seq(), 10);
    }
}
