//! The overload model: a fixed number of requests served at once, a backlog that
//! queues (and slows everything down), and refusals past it.
//!
//! Real servers do not keep their throughput flat when overloaded: threads
//! contend, caches thrash, the database locks. Here each request's service time
//! grows with how far the number of requests inside exceeds capacity
//! (`collapse`), so sustained overload lowers throughput instead of only adding
//! delay.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The knobs of the model.
#[derive(Clone, Debug)]
pub struct Options {
    /// Requests served at once.
    pub capacity: usize,
    /// Time to serve one request when not overloaded.
    pub service_time: Duration,
    /// Requests that may wait for a free slot; more are refused at once (503).
    pub backlog: usize,
    /// Longest wait for a free slot before a 503.
    pub queue_timeout: Duration,
    /// How much the service time grows per capacity's worth of requests waiting:
    /// `service × (1 + collapse × waiting / capacity)`. 0 keeps it flat.
    pub collapse: f64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            capacity: 50,
            service_time: Duration::from_millis(50),
            backlog: 200,
            queue_timeout: Duration::from_secs(10),
            collapse: 1.0,
        }
    }
}

/// Why a request was not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The backlog was full on arrival.
    BacklogFull,
    /// It waited longer than the queue timeout.
    WaitedTooLong,
}

/// Counters `/__stats` reports.
#[derive(Default)]
pub struct Counters {
    /// Requests inside (waiting or being served).
    pub in_flight: AtomicU64,
    /// The most ever inside at once.
    pub max_in_flight: AtomicU64,
    /// Requests received (pages, not `/__*`).
    pub requests: AtomicU64,
    /// Requests refused or failed.
    pub errors: AtomicU64,
    /// Requests waiting for a slot.
    pub waiting: AtomicU64,
}

/// The model's state.
pub struct Overload {
    options: Options,
    slots: Arc<Semaphore>,
    capacity: AtomicUsize,
    /// Counters for `/__stats`.
    pub counters: Counters,
    latency: Mutex<hdrhistogram::Histogram<u64>>,
}

/// Marks a request inside the stub; leaves on drop however the request ends.
pub struct Inside<'a>(&'a Counters);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A slot being served.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    /// How long serving takes, given the load on arrival.
    pub service_time: Duration,
}

impl Overload {
    /// A model with these options.
    pub fn new(options: Options) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(options.capacity)),
            capacity: AtomicUsize::new(options.capacity),
            options,
            counters: Counters::default(),
            latency: Mutex::new(new_histogram()),
        }
    }

    /// Counts a request in; it counts as inside until the guard drops.
    pub fn enter(&self) -> Inside<'_> {
        let c = &self.counters;
        c.requests.fetch_add(1, Ordering::SeqCst);
        let now = c.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        c.max_in_flight.fetch_max(now, Ordering::SeqCst);
        Inside(c)
    }

    /// Waits for a slot, or refuses.
    pub async fn slot(&self) -> Result<Slot, Refusal> {
        let c = &self.counters;
        if c.waiting.fetch_add(1, Ordering::SeqCst) >= self.options.backlog as u64 {
            c.waiting.fetch_sub(1, Ordering::SeqCst);
            c.errors.fetch_add(1, Ordering::SeqCst);
            return Err(Refusal::BacklogFull);
        }
        let acquired = tokio::time::timeout(
            self.options.queue_timeout,
            self.slots.clone().acquire_owned(),
        )
        .await;
        let waiting_now = c.waiting.fetch_sub(1, Ordering::SeqCst) - 1;
        match acquired {
            Ok(Ok(permit)) => {
                let capacity = self.capacity().max(1) as f64;
                let factor = 1.0 + self.options.collapse * waiting_now as f64 / capacity;
                Ok(Slot {
                    _permit: permit,
                    service_time: self.options.service_time.mul_f64(factor),
                })
            }
            _ => {
                c.errors.fetch_add(1, Ordering::SeqCst);
                Err(Refusal::WaitedTooLong)
            }
        }
    }

    /// Records the time a served request spent inside.
    pub fn served(&self, since: Instant) {
        let us = since.elapsed().as_micros() as u64;
        let mut h = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let _ = h.record(us.max(1));
    }

    /// The current capacity.
    pub fn capacity(&self) -> usize {
        self.capacity.load(Ordering::SeqCst)
    }

    /// Changes the capacity at run time ("we added servers").
    pub fn set_capacity(&self, capacity: usize) {
        let old = self.capacity.swap(capacity, Ordering::SeqCst);
        if capacity > old {
            self.slots.add_permits(capacity - old);
        } else if capacity < old {
            // Take the surplus slots as they free up, and keep them.
            let slots = self.slots.clone();
            let surplus = (old - capacity) as u32;
            tokio::spawn(async move {
                if let Ok(p) = slots.acquire_many_owned(surplus).await {
                    p.forget();
                }
            });
        }
    }

    /// Latency percentiles of served requests, in milliseconds.
    pub fn latency_ms(&self) -> serde_json::Value {
        let h = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        serde_json::json!({
            "count": h.len(),
            "p50": ms(0.5),
            "p90": ms(0.9),
            "p99": ms(0.99),
            "max": h.max() as f64 / 1000.0,
        })
    }

    /// Clears the counters and the latency histogram.
    pub fn reset(&self) {
        let c = &self.counters;
        c.max_in_flight
            .store(c.in_flight.load(Ordering::SeqCst), Ordering::SeqCst);
        c.requests.store(0, Ordering::SeqCst);
        c.errors.store(0, Ordering::SeqCst);
        *self.latency.lock().unwrap_or_else(|p| p.into_inner()) = new_histogram();
    }
}

fn new_histogram() -> hdrhistogram::Histogram<u64> {
    // 1 µs to 10 min, 3 significant digits.
    hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3).expect("valid histogram bounds")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn service_slows_down_as_the_backlog_grows() {
        let o = Arc::new(Overload::new(Options {
            capacity: 2,
            service_time: Duration::from_millis(100),
            backlog: 10,
            queue_timeout: Duration::from_secs(60),
            collapse: 1.0,
        }));
        let a = o.slot().await.unwrap();
        let _b = o.slot().await.unwrap();
        assert_eq!(a.service_time, Duration::from_millis(100));
        // Four more wait; when a slot frees, the next one served is slowed by 3/2.
        let waiters: Vec<_> = (0..4)
            .map(|_| {
                let o = o.clone();
                tokio::spawn(async move { o.slot().await.map(|s| s.service_time) })
            })
            .collect();
        tokio::task::yield_now().await;
        assert_eq!(o.counters.waiting.load(Ordering::SeqCst), 4);
        drop(a);
        let first = waiters.into_iter().next().unwrap().await.unwrap().unwrap();
        assert_eq!(first, Duration::from_millis(250));
    }

    #[tokio::test(start_paused = true)]
    async fn capacity_changes_at_run_time() {
        let o = Overload::new(Options {
            capacity: 1,
            queue_timeout: Duration::from_millis(10),
            ..Options::default()
        });
        let first = o.slot().await.unwrap();
        assert_eq!(o.slot().await.err(), Some(Refusal::WaitedTooLong));
        o.set_capacity(2);
        let _second = o.slot().await.unwrap();
        drop(first);
        o.set_capacity(1);
        tokio::task::yield_now().await;
        assert_eq!(o.slot().await.err(), Some(Refusal::WaitedTooLong));
    }
}
