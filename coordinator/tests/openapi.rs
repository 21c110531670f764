//! `GET /v1/openapi.json` from a real coordinator process: the compiled-in document, with or
//! without credentials, while the rest of `/v1` still wants them. (The document's agreement
//! with the router and the wire types is checked by the unit tests in `api/openapi.rs`.)

use std::path::Path;

use serde_json::Value;
use sluice_coordinator::api::openapi::document_json;
use sluice_tests::cluster::{Cluster, NodeOpts};

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_sluice-coordinator"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_document_is_served_to_anyone() {
    let c = Cluster::start(bin(), 1, NodeOpts::default()).await;
    let anonymous = c.pki.client(None).build().expect("client");
    let want: Value = serde_json::from_str(document_json()).unwrap();
    for (who, client) in [("admin", &c.http), ("anonymous", &anonymous)] {
        let resp = client
            .get(c.nodes[0].url("/v1/openapi.json"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{who}");
        assert_eq!(resp.headers()["content-type"], "application/json", "{who}");
        let got: Value = resp.json().await.unwrap();
        assert_eq!(got, want, "{who}");
        assert_eq!(got["openapi"], "3.1.0");
    }
    // Opening the document opened nothing else.
    let resp = anonymous
        .get(c.nodes[0].url("/v1/cluster"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let resp = anonymous
        .get(c.nodes[0].url("/v1/openapi.json/x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}
