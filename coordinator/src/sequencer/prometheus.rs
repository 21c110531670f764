//! The `prometheus` checks of a canary analysis: an instant query against the configured
//! Prometheus (`GET /api/v1/query`), its first sample as the value. An empty result (or
//! NaN) is no data; anything else that is not a number is an error.

use std::time::Duration;

use serde::Deserialize;
use sluice_common::analysis::Sample;

use crate::config::AnalysisConfig;

/// A Prometheus to query.
#[derive(Debug, Clone)]
pub struct Prometheus {
    base: String,
    client: reqwest::Client,
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: serde_json::Value,
}

/// The sample an answer body holds.
pub fn sample_of(body: &[u8]) -> Sample {
    let answer: Answer = match serde_json::from_slice(body) {
        Ok(a) => a,
        Err(e) => return Sample::Error(format!("unreadable answer from Prometheus: {e}")),
    };
    if answer.status != "success" {
        return Sample::Error(format!(
            "Prometheus: {}",
            answer.error.unwrap_or_else(|| answer.status.clone())
        ));
    }
    let Some(data) = answer.data else {
        return Sample::Error("Prometheus answered no data section".into());
    };
    let value = match data.result_type.as_str() {
        "vector" => match data.result.as_array().and_then(|v| v.first()) {
            Some(first) => first["value"][1].clone(),
            None => return Sample::NoData,
        },
        "scalar" => data.result[1].clone(),
        other => {
            return Sample::Error(format!(
                "the query must give a scalar or an instant vector, not a {other}"
            ))
        }
    };
    let Some(text) = value.as_str() else {
        return Sample::Error(format!("Prometheus answered {value}, not a sample"));
    };
    match text.parse::<f64>() {
        Ok(v) if v.is_nan() => Sample::NoData,
        Ok(v) => Sample::Value(v),
        Err(_) => Sample::Error(format!("Prometheus answered {text:?}, not a number")),
    }
}

impl Prometheus {
    /// The configured Prometheus, if any.
    pub fn from_config(c: &AnalysisConfig) -> Option<Self> {
        let base = c.prometheus_url.as_ref()?.trim_end_matches('/').to_string();
        let timeout = c.query_timeout.get().max(Duration::from_millis(100));
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .build()
            .ok()?;
        Some(Self { base, client })
    }

    /// Runs `query` now.
    pub async fn query(&self, query: &str) -> Sample {
        let url = format!("{}/api/v1/query", self.base);
        let resp = self
            .client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form_encode(&[("query", query)]))
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return Sample::Error(format!("Prometheus unreachable: {e}")),
        };
        let status = resp.status();
        match resp.bytes().await {
            // Prometheus answers errors (a bad query: 400, a timeout: 503) with its JSON.
            Ok(b) => match sample_of(&b) {
                Sample::Error(e) if status.is_success() => Sample::Error(e),
                Sample::Error(e) => Sample::Error(format!("{status}: {e}")),
                s => s,
            },
            Err(e) => Sample::Error(format!("Prometheus: {e}")),
        }
    }
}

/// `application/x-www-form-urlencoded` of `pairs`.
fn form_encode(pairs: &[(&str, &str)]) -> String {
    let enc = |s: &str| {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                    (b as char).to_string()
                }
                b' ' => "+".to_string(),
                b => format!("%{b:02X}"),
            })
            .collect::<String>()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_samples() {
        let v = br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1700000000.1,"0.25"]}]}}"#;
        assert_eq!(sample_of(v), Sample::Value(0.25));
        let empty = br#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
        assert_eq!(sample_of(empty), Sample::NoData);
        let nan = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#;
        assert_eq!(sample_of(nan), Sample::NoData);
        let scalar = br#"{"status":"success","data":{"resultType":"scalar","result":[1,"3"]}}"#;
        assert_eq!(sample_of(scalar), Sample::Value(3.0));
        let bad = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
        assert_eq!(
            sample_of(bad),
            Sample::Error("Prometheus: parse error".into())
        );
        let matrix = br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#;
        assert!(matches!(sample_of(matrix), Sample::Error(_)));
        assert!(matches!(sample_of(b"<html>"), Sample::Error(_)));
    }

    #[test]
    fn queries_are_form_encoded() {
        assert_eq!(
            form_encode(&[("query", "sum(rate(x{a=\"b\"}[1m])) / 2")]),
            "query=sum%28rate%28x%7Ba%3D%22b%22%7D%5B1m%5D%29%29+%2F+2"
        );
    }
}
