//! Results: medians over runs, switchboard/baseline ratios, the targets of the issue, a
//! table for people and JSON for tools.

use crate::cluster::{Auth, Impl};
use crate::scenarios::{Metric, Metrics, Sizes};
use serde::Serialize;
use std::fmt::Write as _;

/// A scenario: its id, what it measures and the target it is judged against.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Scenario {
    pub id: &'static str,
    pub title: &'static str,
    pub target: &'static str,
    /// Why the Node baseline does not run it, when it does not ("n/a" in the table).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_na: Option<&'static str>,
}

pub const SCENARIOS: [Scenario; 8] = [
    Scenario {
        id: "L1",
        title: "REST POST /users, then POST /rooms (token: authenticated), at fixed concurrency, one replica on Redis",
        target: ">= 5x baseline req/s per core; p99 <= 0.3x",
        baseline_na: None,
    },
    Scenario {
        id: "L2",
        title: "fan-out: POST /calls on replica A -> call.started at clients on replica B (token: the callee's socket only)",
        target: "p99 < 3 ms at 100 clients x 100 calls/s; p99 <= 0.25x baseline",
        baseline_na: None,
    },
    Scenario {
        id: "L3",
        title: "delivered events/s at saturation, 2 replicas (token, L3t: call events, each to its 2 users' sockets among many)",
        target: ">= 5x baseline per core",
        baseline_na: None,
    },
    Scenario {
        id: "L4",
        title: "idle websocket connections on one replica: RSS per connection",
        target: "<= 8 KiB, and below the baseline",
        baseline_na: None,
    },
    Scenario {
        id: "L4b",
        title: "idle polling sessions on one replica: RSS per session",
        target: "below the baseline",
        baseline_na: None,
    },
    Scenario {
        id: "L5",
        title: "kill (SIGKILL) the replica holding the clients, behind nginx",
        target: "100 % reconnected within 10 s",
        baseline_na: None,
    },
    Scenario {
        id: "L6",
        title: "call lifecycle, one replica (CALL_RING_TIMEOUT=1): journeys accept+end, decline busy, cancel; then calls left to ring",
        target: "every answer's status/endReason as the contract says; every ringing call missed, within 2 s of its deadline",
        baseline_na: Some("the Node baseline has no call lifecycle"),
    },
    Scenario {
        id: "L7",
        title: "AUTH=token, one replica: its subscription to the events cut while half its connections are called, then restored; the replica reads what it missed from the event log",
        target: "every called connection has its call once, none left behind, no session.resync",
        baseline_na: Some("the Node baseline has no resuming"),
    },
];

/// The runs of one scenario against one implementation in one auth mode.
#[derive(Debug, Serialize)]
pub struct ImplResult {
    pub implementation: Impl,
    pub auth: Auth,
    pub runs: Vec<Metrics>,
    pub median: Metrics,
    pub error: Option<String>,
}

impl ImplResult {
    pub fn new(implementation: Impl, auth: Auth) -> Self {
        ImplResult { implementation, auth, runs: Vec::new(), median: Vec::new(), error: None }
    }

    fn label(&self) -> String {
        match self.auth {
            Auth::Open => self.implementation.name().to_owned(),
            Auth::Token => format!("{} (AUTH=token)", self.implementation.name()),
        }
    }

    /// Records one run's outcome; the first error ends the scenario for this implementation.
    pub fn record(&mut self, outcome: Result<Metrics, String>) {
        match outcome {
            Ok(m) => self.runs.push(m),
            Err(e) => {
                eprintln!("bench: {} failed: {e}", self.label());
                self.error.get_or_insert(e);
            }
        }
        self.median = median(&self.runs);
    }

    fn get(&self, name: &str) -> Option<f64> {
        self.median.iter().find(|m| m.name == name).map(|m| m.value)
    }
}

/// Per metric, the median of the runs' finite values (NaN when there are none).
fn median(runs: &[Metrics]) -> Metrics {
    let Some(first) = runs.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|m| {
            let mut values: Vec<f64> = runs
                .iter()
                .filter_map(|r| r.iter().find(|x| x.name == m.name))
                .map(|x| x.value)
                .filter(|v| v.is_finite())
                .collect();
            values.sort_by(f64::total_cmp);
            let value = match values.len() {
                0 => f64::NAN,
                n if n % 2 == 1 => values[n / 2],
                n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
            };
            Metric { name: m.name, value }
        })
        .collect()
}

/// One scenario with both implementations (switchboard in each auth mode run).
#[derive(Debug, Serialize)]
pub struct ScenarioResult {
    #[serde(flatten)]
    pub scenario: Scenario,
    pub results: Vec<ImplResult>,
    /// switchboard (open) ÷ baseline, per metric.
    pub ratios: Metrics,
    /// switchboard with `AUTH=token` ÷ switchboard open, per metric: what authentication
    /// and targeted delivery cost (or save).
    pub token_ratios: Metrics,
    /// The target is judged on switchboard open against the baseline (which has no token mode).
    pub verdict: Option<String>,
}

/// `a ÷ b` for every metric both have.
fn quotients(a: Option<&ImplResult>, b: Option<&ImplResult>) -> Metrics {
    match (a, b) {
        (Some(a), Some(b)) => a
            .median
            .iter()
            .filter_map(|m| {
                let base = b.get(m.name)?;
                Some(Metric { name: m.name, value: m.value / base })
            })
            .collect(),
        _ => Vec::new(),
    }
}

impl ScenarioResult {
    pub fn new(scenario: Scenario, results: Vec<ImplResult>, judge: bool) -> Self {
        let find = |imp: Impl, auth: Auth| results.iter().find(|r| r.implementation == imp && r.auth == auth);
        let sb = find(Impl::Switchboard, Auth::Open);
        let node = find(Impl::Node, Auth::Open);
        let ratios = quotients(sb, node);
        let token_ratios = quotients(find(Impl::Switchboard, Auth::Token), sb);
        let verdict = match (judge, sb) {
            (true, Some(sb)) if sb.error.is_none() => Some(verdict(scenario.id, sb, &ratios)),
            _ => None,
        };
        ScenarioResult { scenario, results, ratios, token_ratios, verdict }
    }
}

/// Whether switchboard met the target, with the numbers that decided it.
fn verdict(id: &str, sb: &ImplResult, ratios: &Metrics) -> String {
    let ratio = |name: &str| ratios.iter().find(|m| m.name == name).map_or(f64::NAN, |m| m.value);
    let own = |name: &str| sb.get(name).unwrap_or(f64::NAN);
    let checks: Vec<(String, bool)> = match id {
        "L1" => vec![
            (format!("req/s per core {:.2}x (>= 5)", ratio("req_per_cpu_s")), ratio("req_per_cpu_s") >= 5.0),
            (format!("p99 {:.2}x (<= 0.3)", ratio("p99_ms")), ratio("p99_ms") <= 0.3),
        ],
        "L2" => vec![
            (format!("p99 {:.2} ms (< 3)", own("p99_ms")), own("p99_ms") < 3.0),
            (format!("p99 {:.2}x (<= 0.25)", ratio("p99_ms")), ratio("p99_ms") <= 0.25),
        ],
        "L3" => vec![(
            format!("events/s per core {:.2}x (>= 5)", ratio("events_per_cpu_s")),
            ratio("events_per_cpu_s") >= 5.0,
        )],
        "L4" => vec![
            (format!("{:.1} KiB/conn (<= 8)", own("kib_per_conn")), own("kib_per_conn") <= 8.0),
            (format!("RSS/conn {:.2}x (< 1)", ratio("kib_per_conn")), ratio("kib_per_conn") < 1.0),
        ],
        "L4b" => vec![(format!("RSS/session {:.2}x (< 1)", ratio("kib_per_session")), ratio("kib_per_session") < 1.0)],
        "L5" => {
            vec![(format!("{:.1} % back within 10 s", own("reconnected_10s_pct")), own("reconnected_10s_pct") >= 100.0)]
        }
        "L6" => {
            // Every run, not the median: one wrong answer or one call not missed is a miss.
            let worst = |name: &str, pick: fn(f64, f64) -> f64| {
                sb.runs.iter().filter_map(|r| r.iter().find(|m| m.name == name)).map(|m| m.value).reduce(pick)
            };
            let errors = worst("errors", f64::max).unwrap_or(f64::NAN);
            let unconfirmed = sb
                .runs
                .iter()
                .map(|r| {
                    let v = |n: &str| r.iter().find(|m| m.name == n).map_or(f64::NAN, |m| m.value);
                    v("missed_calls") - v("missed_confirmed")
                })
                .fold(0.0, f64::max);
            let late = worst("missed_late_max_s", f64::max).unwrap_or(f64::NAN);
            vec![
                (format!("{errors} failed or wrong answers"), errors == 0.0),
                (format!("{unconfirmed} ringing calls not missed"), unconfirmed == 0.0),
                (format!("missed at worst {late:.2} s after the deadline (<= 2)"), late <= 2.0),
            ]
        }
        _ => Vec::new(),
    };
    let met = checks.iter().all(|(_, ok)| *ok);
    let detail: Vec<String> =
        checks.into_iter().map(|(what, ok)| format!("{what} {}", if ok { "ok" } else { "MISSED" })).collect();
    format!("{}: {}", if met { "met" } else { "NOT met" }, detail.join("; "))
}

/// The machine the numbers come from.
#[derive(Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
}

impl Machine {
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Machine {
            // Counted from /proc/cpuinfo, not from this process's (pinned) affinity.
            nproc: cpuinfo.lines().filter(|l| l.starts_with("processor")).count(),
            cpu_model: cpuinfo
                .lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
                .unwrap_or_default(),
        }
    }
}

/// Everything a run produced, as written to the JSON file.
#[derive(Debug, Serialize)]
pub struct Report {
    pub smoke: bool,
    pub machine: Machine,
    pub runs_per_scenario: usize,
    pub server_cpus: Option<String>,
    pub harness_note: &'static str,
    pub sizes: Sizes,
    pub scenarios: Vec<ScenarioResult>,
}

fn fmt_value(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 1000.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

impl Report {
    /// The human-readable table: one block per scenario, a row per metric; switchboard
    /// open and with `AUTH=token`, the baseline, and the two ratios.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<4} {:<22} {:>14} {:>14} {:>14} {:>10} {:>11}",
            "", "metric", "switchboard", "sb AUTH=token", "node", "sb/node", "token/open"
        );
        for s in &self.scenarios {
            let _ = writeln!(out, "{:<4} {} (target: {})", s.scenario.id, s.scenario.title, s.scenario.target);
            let names: Vec<&'static str> =
                s.results.iter().flat_map(|r| r.median.iter().map(|m| m.name)).fold(Vec::new(), |mut acc, n| {
                    if !acc.contains(&n) {
                        acc.push(n);
                    }
                    acc
                });
            let na = s.scenario.baseline_na.is_some();
            let cell = |imp: Impl, auth: Auth, name: &str| {
                if na && imp == Impl::Node {
                    return "n/a".into();
                }
                s.results
                    .iter()
                    .find(|r| r.implementation == imp && r.auth == auth)
                    .and_then(|r| r.get(name))
                    .map_or("-".into(), fmt_value)
            };
            let ratio = |ratios: &Metrics, name: &str| {
                ratios.iter().find(|m| m.name == name).map_or("-".into(), |m| fmt_value(m.value))
            };
            for name in names {
                let _ = writeln!(
                    out,
                    "{:<4} {:<22} {:>14} {:>14} {:>14} {:>10} {:>11}",
                    "",
                    name,
                    cell(Impl::Switchboard, Auth::Open, name),
                    cell(Impl::Switchboard, Auth::Token, name),
                    cell(Impl::Node, Auth::Open, name),
                    if na { "n/a".into() } else { ratio(&s.ratios, name) },
                    ratio(&s.token_ratios, name),
                );
            }
            if let Some(why) = s.scenario.baseline_na {
                let _ = writeln!(out, "     node: n/a ({why})");
            }
            for r in &s.results {
                if let Some(e) = &r.error {
                    let _ = writeln!(out, "     {} FAILED: {e}", r.label());
                }
            }
            if let Some(v) = &s.verdict {
                let _ = writeln!(out, "     verdict: {v}");
            }
        }
        out
    }

    /// Whether every scenario ran and produced at least one finite number for every
    /// implementation, and (with `no_errors`, as smoke mode asks) no request failed.
    /// Timings are never judged here.
    pub fn complete(&self, no_errors: bool) -> bool {
        let failed_requests =
            |r: &ImplResult| r.runs.iter().flatten().any(|m| m.name.ends_with("errors") && m.value > 0.0);
        self.scenarios.iter().all(|s| {
            s.results.iter().all(|r| {
                r.error.is_none()
                    && !r.runs.is_empty()
                    && r.median.iter().any(|m| m.value.is_finite())
                    && !(no_errors && failed_requests(r))
            })
        })
    }
}
