//! Latency samples per step and their percentiles (nearest rank), plus the error tally of a
//! scenario. Each virtual user records into its own `Recorder`; they are merged at the end.

use std::time::Duration;

use serde::Serialize;

/// The value at percentile `p` (0 < p <= 100) of `sorted`, by the nearest-rank method:
/// the smallest sample with at least p % of all samples at or below it.
pub fn percentile(sorted: &[Duration], p: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// p50, p95 and p99 of one step, in milliseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

impl Summary {
    pub fn of(samples: &mut [Duration]) -> Option<Summary> {
        samples.sort_unstable();
        let ms = |p| percentile(samples, p).map_or(0.0, |d| d.as_secs_f64() * 1000.0);
        (!samples.is_empty()).then(|| Summary {
            count: samples.len(),
            p50_ms: ms(50.0),
            p95_ms: ms(95.0),
            p99_ms: ms(99.0),
        })
    }
}

/// What one virtual user saw: step durations in the order steps first occurred, completed
/// logins, the HTTP requests those logins sent, and errors (the first few messages kept).
#[derive(Default)]
pub struct Recorder {
    steps: Vec<(&'static str, Vec<Duration>)>,
    pub completed: u64,
    /// HTTP requests sent by the completed logins (browser, app and back channel).
    pub requests: u64,
    /// HTTP requests sent so far by the login under way.
    in_login: u64,
    pub errors: u64,
    pub error_samples: Vec<String>,
}

const KEPT_ERRORS: usize = 5;

impl Recorder {
    pub fn step(&mut self, name: &'static str, took: Duration) {
        match self.steps.iter_mut().find(|(n, _)| *n == name) {
            Some((_, samples)) => samples.push(took),
            None => self.steps.push((name, vec![took])),
        }
    }

    /// A login begins: requests counted from here belong to it.
    pub fn begin_login(&mut self) {
        self.in_login = 0;
    }

    /// The login under way sent `n` more HTTP requests.
    pub fn sent(&mut self, n: u64) {
        self.in_login += n;
    }

    /// The login under way completed: it counts, with its requests. A failed login's requests
    /// are dropped with it at the next `begin_login`.
    pub fn complete_login(&mut self) {
        self.completed += 1;
        self.requests += self.in_login;
        self.in_login = 0;
    }

    pub fn error(&mut self, message: String) {
        self.errors += 1;
        if self.error_samples.len() < KEPT_ERRORS {
            self.error_samples.push(message);
        }
    }

    pub fn merge(&mut self, other: Recorder) {
        for (name, samples) in other.steps {
            match self.steps.iter_mut().find(|(n, _)| *n == name) {
                Some((_, mine)) => mine.extend(samples),
                None => self.steps.push((name, samples)),
            }
        }
        self.completed += other.completed;
        self.requests += other.requests;
        self.errors += other.errors;
        for e in other.error_samples {
            if self.error_samples.len() < KEPT_ERRORS {
                self.error_samples.push(e);
            }
        }
    }

    /// Step summaries in the order the steps happen in a login.
    pub fn summaries(mut self) -> Vec<(String, Summary)> {
        self.steps
            .iter_mut()
            .filter_map(|(name, samples)| Summary::of(samples).map(|s| (name.to_string(), s)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn nearest_rank_percentiles() {
        let sorted = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile(&sorted, 50.0), Some(Duration::from_millis(50)));
        assert_eq!(percentile(&sorted, 95.0), Some(Duration::from_millis(95)));
        assert_eq!(percentile(&sorted, 99.0), Some(Duration::from_millis(99)));
        assert_eq!(percentile(&sorted, 100.0), Some(Duration::from_millis(100)));

        let few = ms(&[10, 20, 30, 40]);
        assert_eq!(percentile(&few, 50.0), Some(Duration::from_millis(20)));
        assert_eq!(percentile(&few, 51.0), Some(Duration::from_millis(30)));
        assert_eq!(percentile(&few, 99.0), Some(Duration::from_millis(40)));
        assert_eq!(percentile(&ms(&[7]), 50.0), Some(Duration::from_millis(7)));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summaries_sort_and_merge_keeps_step_order() {
        let mut a = Recorder::default();
        a.step("username", Duration::from_millis(30));
        a.step("answer", Duration::from_millis(5));
        a.completed = 1;
        let mut b = Recorder::default();
        b.step("answer", Duration::from_millis(1));
        b.step("username", Duration::from_millis(10));
        b.step("username", Duration::from_millis(20));
        b.error("boom".into());
        a.merge(b);
        assert_eq!((a.completed, a.errors), (1, 1));
        assert_eq!(a.requests, 0);
        let s = a.summaries();
        assert_eq!(s[0].0, "username");
        assert_eq!(
            s[0].1,
            Summary {
                count: 3,
                p50_ms: 20.0,
                p95_ms: 30.0,
                p99_ms: 30.0
            }
        );
        assert_eq!((s[1].0.as_str(), s[1].1.p50_ms), ("answer", 1.0));
    }

    #[test]
    fn only_completed_logins_count_their_requests() {
        let mut a = Recorder::default();
        a.begin_login();
        a.sent(3);
        a.sent(2);
        a.complete_login();
        a.begin_login();
        a.sent(4); // this login fails: its requests are not counted
        a.error("no answer".into());
        a.begin_login();
        a.sent(1);
        a.complete_login();
        let mut b = Recorder::default();
        b.begin_login();
        b.sent(7);
        b.complete_login();
        a.merge(b);
        assert_eq!((a.completed, a.requests, a.errors), (3, 13, 1));
    }
}
