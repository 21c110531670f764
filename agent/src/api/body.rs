//! Request bodies go through the strict JSON extractor both daemons share
//! ([`sluice_common::edge::ApiJson`], here as [`JsonBody`]); these tests pin what it says
//! about the agent's own wire types.

pub use sluice_common::edge::ApiJson as JsonBody;

#[cfg(test)]
mod tests {
    use sluice_common::agent_api::{DeployRequest, RemoveServiceRequest};

    use sluice_common::edge::parse;
    use sluice_common::problem::ErrorCode;

    #[test]
    fn json_errors_name_the_field() {
        let e = parse::<DeployRequest>(br#"{"fence":{"key":"service/a","token":1},"service":"A"}"#)
            .unwrap_err();
        assert_eq!(e.0.errors[0].field, "service");
        assert_eq!(e.0.code, ErrorCode::InvalidRequest);
        let e = parse::<RemoveServiceRequest>(
            br#"{"fence":{"key":"service/a","token":1},"force":true}"#,
        )
        .unwrap_err();
        assert_eq!(e.0.errors[0].field, "force");
        let e = parse::<RemoveServiceRequest>(br#"{"fence":{"key":"service/a","token":"x"}}"#)
            .unwrap_err();
        assert_eq!(e.0.errors[0].field, "fence.token");
        let e = parse::<DeployRequest>(
            br#"{"fence":{"key":"service/a","token":1},"service":"a","image":"a:1","container_port":1,"host_port":2,"health":{"kind":"none"},"env":{"TOKEN":918273645}}"#,
        )
        .unwrap_err();
        assert_eq!(e.0.errors[0].field, "env.TOKEN");
        assert!(!e.0.to_string().contains("918273645"), "{}", e.0);
        let e = parse::<RemoveServiceRequest>(br#"{"fence":{"key":"service/a"}}"#).unwrap_err();
        assert_eq!(e.0.errors[0].field, "fence.token");
        let e = parse::<RemoveServiceRequest>(b"{").unwrap_err();
        assert_eq!(e.0.errors[0].field, "body");
    }
}
