//! Reads one service's per-target counters out of `sluice-proxy`'s Prometheus text
//! (`sluice_proxy_requests_total`, `sluice_proxy_request_duration_seconds`), for the
//! built-in canary checks. Lines of other metrics and other services are skipped; a line
//! that does not parse is skipped too (the proxy writes them, the format is fixed).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

const REQUESTS: &str = "sluice_proxy_requests_total";
const BUCKET: &str = "sluice_proxy_request_duration_seconds_bucket";
const COUNT: &str = "sluice_proxy_request_duration_seconds_count";

/// One proxy target's counters (cumulative since the proxy started), as
/// `sluice_proxy_requests_total` and `sluice_proxy_request_duration_seconds` count them.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct TargetTraffic {
    /// The target's name (the container's short id).
    pub target: String,
    /// Answered requests by class (`2xx`, `5xx`, `error`, ...).
    pub by_class: BTreeMap<String, u64>,
    /// The latency histogram's finite buckets, cumulative: `(upper bound in seconds,
    /// count)`, ascending.
    pub buckets: Vec<(f64, u64)>,
    /// Observations in all (the `+Inf` bucket).
    pub count: u64,
}

/// `name{labels} value` → (name, labels, value).
fn sample(line: &str) -> Option<(&str, BTreeMap<String, String>, f64)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, rest) = match line.find('{') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => {
            let (n, v) = line.split_once(' ')?;
            return Some((n, BTreeMap::new(), v.trim().parse().ok()?));
        }
    };
    let mut labels = BTreeMap::new();
    let mut chars = rest.char_indices().peekable();
    let end = loop {
        // label name
        let start = chars.peek()?.0;
        let mut eq = None;
        for (i, c) in chars.by_ref() {
            if c == '=' {
                eq = Some(i);
                break;
            }
        }
        let key = rest[start..eq?].trim_start_matches(',').trim().to_string();
        if chars.next()?.1 != '"' {
            return None;
        }
        let mut value = String::new();
        loop {
            match chars.next()?.1 {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        labels.insert(key, value);
        match chars.next()? {
            (_, ',') if chars.peek().is_some_and(|(_, c)| *c == '}') => break chars.next()?.0,
            (_, ',') => continue,
            (i, '}') => break i,
            _ => return None,
        }
    };
    let value = rest[end + 1..].split_whitespace().next()?.parse().ok()?;
    Some((name, labels, value))
}

/// Every target of `service` with what the proxy counted for it.
pub fn service_traffic(text: &str, service: &str) -> BTreeMap<String, TargetTraffic> {
    let mut out: BTreeMap<String, TargetTraffic> = BTreeMap::new();
    for line in text.lines() {
        let Some((name, labels, value)) = sample(line) else {
            continue;
        };
        if !matches!(name, REQUESTS | BUCKET | COUNT)
            || labels.get("service").map(String::as_str) != Some(service)
        {
            continue;
        }
        let Some(target) = labels.get("target") else {
            continue;
        };
        let t = out.entry(target.clone()).or_insert_with(|| TargetTraffic {
            target: target.clone(),
            ..Default::default()
        });
        let n = if value.is_finite() && value >= 0.0 {
            value as u64
        } else {
            0
        };
        match name {
            REQUESTS => {
                if let Some(class) = labels.get("class") {
                    *t.by_class.entry(class.clone()).or_default() += n;
                }
            }
            BUCKET => match labels.get("le").map(|le| le.parse::<f64>()) {
                Some(Ok(le)) if le.is_finite() => t.buckets.push((le, n)),
                _ => {}
            },
            _ => t.count = n,
        }
    }
    for t in out.values_mut() {
        t.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP sluice_proxy_requests_total Requests answered.
# TYPE sluice_proxy_requests_total counter
sluice_proxy_requests_total{class="2xx",service="web",target="aaa"} 90
sluice_proxy_requests_total{class="5xx",service="web",target="aaa"} 10
sluice_proxy_requests_total{class="2xx",service="web",target="bbb"} 7
sluice_proxy_requests_total{class="2xx",service="other",target="ccc"} 5
sluice_proxy_request_duration_seconds_bucket{service="web",target="aaa",le="0.1"} 60
sluice_proxy_request_duration_seconds_bucket{service="web",target="aaa",le="0.01"} 40
sluice_proxy_request_duration_seconds_bucket{service="web",target="aaa",le="+Inf"} 100
sluice_proxy_request_duration_seconds_sum{service="web",target="aaa"} 3.5
sluice_proxy_request_duration_seconds_count{service="web",target="aaa"} 100
sluice_proxy_up 1
garbage{ line
"#;

    #[test]
    fn one_services_targets_with_their_classes_and_buckets() {
        let t = service_traffic(TEXT, "web");
        assert_eq!(t.len(), 2);
        let a = &t["aaa"];
        assert_eq!(a.by_class["2xx"], 90);
        assert_eq!(a.by_class["5xx"], 10);
        assert_eq!(a.buckets, vec![(0.01, 40), (0.1, 60)]);
        assert_eq!(a.count, 100);
        let w = crate::analysis::window::window(&Default::default(), &a.into());
        assert_eq!(w.error_ratio(), Some(0.1));
        assert_eq!(t["bbb"].by_class["2xx"], 7);
        assert!(service_traffic(TEXT, "nothing").is_empty());
    }

    #[test]
    fn escaped_label_values_and_a_trailing_comma() {
        let (n, l, v) = sample(r#"m{a="x\"y",b="c\\d",} 3 1700000000"#).expect("parses");
        assert_eq!(n, "m");
        assert_eq!(l["a"], "x\"y");
        assert_eq!(l["b"], "c\\d");
        assert_eq!(v, 3.0);
        assert!(sample("m{a=x} 1").is_none());
    }
}
