//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of the public API, generated.
//!
//! Every route of the public router is registered through [`super::documented`], which
//! takes only `utoipa_axum::routes!` entries: a handler's `#[utoipa::path]` attribute is
//! both its route (method and path) and its documentation, so the two cannot drift. The
//! schemas come from the wire types (`sluice_common`'s `ToSchema`, feature `openapi`), whose
//! validated newtypes state the limits their parsers enforce. What is the same for many
//! operations is added here once ([`finish`]): the error responses every operation can give
//! (`application/problem+json` with the `Problem` schema), security, and the document's
//! info, servers and tags.
//!
//! The document is built once per process, on first use, and served as it is; it needs no
//! credentials: it describes the API, not the cluster. The tests below check that its routes
//! are the router's, every `$ref` resolves, and real wire values serialized by serde fit the
//! schemas that describe them.

use std::borrow::Cow;
use std::sync::OnceLock;

use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{json, Value};
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityRequirement, SecurityScheme};
use utoipa::openapi::server::{ServerBuilder, ServerVariableBuilder};
use utoipa::openapi::tag::TagBuilder;
use utoipa::openapi::{ContentBuilder, InfoBuilder, OpenApi, Ref, RefOr, Required};
use utoipa::{PartialSchema, ToSchema};

use sluice_common::problem::{Problem, PROBLEM_JSON};

mod params;
pub use params::{DeploymentPath, LockKeyPath, ServerNamePath, ServerPath, ServerServicePath};

/// The document's `info.description`.
const DESCRIPTION: &str = "The CI-facing HTTPS API of a Sluice coordinator (any node: followers forward writes to the leader).\n\n\
Authentication: a bearer token (`Authorization: Bearer sluice_...`, created with `POST /v1/tokens`) whose role allows the call — a viewer reads (GET), a deployer also deploys, rolls back, cancels and takes locks within its service scope, an admin does everything (servers, ports, policy, cluster membership, tokens) — or a `client` certificate from the project CA over mutual TLS, which counts as an admin (the operator's CLI). Agents use their `agent` certificate for `/v1/agents/*`. `/healthz`, `/readyz`, `/metrics` and this document need no credentials.\n\n\
Errors are RFC 9457 `application/problem+json` with a stable `code` (see the Problem schema); unknown paths are 404 `not_found` and wrong methods 405 `method_not_allowed`. Request bodies are at most 1 MiB and refuse unknown fields; responses may gain fields within v1, so clients must ignore fields they do not know. Every response echoes `X-Request-Id` (taken from the request when it is 1-64 visible ASCII characters, else made up).";

/// Tags, in the order the reference lists them.
const TAGS: [&str; 11] = [
    "agents",
    "audit",
    "cluster",
    "deployments",
    "locks",
    "meta",
    "ports",
    "probes",
    "registries",
    "servers",
    "tokens",
];

/// Operations anyone may call (no `security`).
const PUBLIC: [&str; 4] = ["healthz", "readyz", "metrics", "openapi"];

/// Operations only agent certificates (and coordinators) call.
const AGENTS: [&str; 2] = ["registerAgent", "agentHeartbeat"];

/// Declares the problem responses operations name (`(status = 404, response = NotFound)`),
/// each a `#/components/responses/<Name>` with the `Problem` schema.
macro_rules! problem_responses {
    ($($name:ident => $description:literal,)*) => {
        $(
            #[doc = $description]
            #[derive(Debug)]
            pub struct $name;

            impl<'s> utoipa::ToResponse<'s> for $name {
                fn response() -> (&'s str, RefOr<Response>) {
                    (stringify!($name), RefOr::T(problem_response($description)))
                }
            }
        )*

        /// Every problem response, for the document's components.
        fn problem_responses() -> Vec<(&'static str, RefOr<Response>)> {
            vec![$(<$name as utoipa::ToResponse>::response(),)*]
        }
    };
}

problem_responses! {
    BadRequest => "The body, query or a path parameter is invalid. Codes: `invalid_request`.",
    Unauthenticated => "No (valid) bearer token or client certificate. Codes: `unauthenticated`.",
    Forbidden => "The caller's role or service scope does not allow this. Codes: `forbidden`.",
    NotFound => "What the path names does not exist. Codes: `not_found`.",
    Conflict => "Conflicts with the current state. Codes: `conflict`; for a deployment, `service_changed` (its `check_index` is not the service's index any more).",
    LockConflict => "A lock is held by someone else, not held with this token, or expired. Codes: `lock_held`, `lock_not_held`, `lock_expired`.",
    MembershipConflict => "The membership change is refused now: another is in progress, this node is not a voter, or it would remove the last voter. Codes: `membership_change_in_progress`, `not_a_voter`, `conflict`.",
    PortConflict => "No port left, or the explicit port is taken. Codes: `ports_exhausted`, `port_taken`.",
    PayloadTooLarge => "The body is over 1 MiB. Codes: `payload_too_large`.",
    UnsupportedMediaType => "The body must be JSON (`Content-Type: application/json`). Codes: `unsupported_media_type`.",
    Unprocessable => "The Idempotency-Key was used before with a different body. Codes: `idempotency_key_reused`.",
    Internal => "A bug or an unexpected fault. Codes: `internal`.",
    Unavailable => "No leader or no quorum (retry later); with `outcome_unknown: true` the write may still commit. Codes: `unavailable`.",
}

fn problem_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(Problem::name())))
                .build(),
        )
        .build()
}

/// The `default` response: any problem.
fn any_problem() -> Response {
    let codes: Vec<String> = sluice_common::openapi::every_error_code()
        .into_iter()
        .map(|c| format!("`{}`", c.as_str()))
        .collect();
    problem_response(&format!("Any other error. Codes: {}.", codes.join(", ")))
}

fn response_ref(name: &str) -> RefOr<Response> {
    RefOr::Ref(Ref::new(format!("#/components/responses/{name}")))
}

/// The methods of a path item, with their operations.
fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// What every document of this API says beside the operations.
fn finish(doc: &mut OpenApi) {
    doc.info = InfoBuilder::new()
        .title("Sluice coordinator API")
        .version(sluice_common::api::API_VERSION.to_string())
        .description(Some(DESCRIPTION))
        .build();
    doc.servers = Some(vec![ServerBuilder::new()
        .url("https://{host}:{port}")
        .parameter(
            "host",
            ServerVariableBuilder::new().default_value("localhost"),
        )
        .parameter("port", ServerVariableBuilder::new().default_value("7000"))
        .build()]);
    doc.tags = Some(
        TAGS.iter()
            .map(|t| TagBuilder::new().name(*t).build())
            .collect(),
    );
    doc.security = Some(vec![
        SecurityRequirement::new("bearerAuth", Vec::<String>::new()),
        SecurityRequirement::new("mutualTLS", Vec::<String>::new()),
    ]);

    let components = doc.components.get_or_insert_with(Default::default);
    let mut bearer = Http::new(HttpAuthScheme::Bearer);
    bearer.description = Some(
        "A token secret from `POST /v1/tokens` (`sluice_` and 64 hex digits), or the \
         bootstrap admin secret (`admin_token_file`)."
            .into(),
    );
    components.add_security_scheme("bearerAuth", SecurityScheme::Http(bearer));
    components.add_security_scheme(
        "mutualTLS",
        SecurityScheme::MutualTls {
            description: Some(
                "A certificate from the project CA (`sluice ca issue`): `client` certificates \
                 act as admin on `/v1/*`; `agent` certificates may only register and \
                 heartbeat for the server they name."
                    .into(),
            ),
            deprecated: None,
            extensions: None,
        },
    );
    components
        .schemas
        .insert(Problem::name().into(), Problem::schema());
    for (name, schema) in Problem::referenced_schemas() {
        components.schemas.entry(name).or_insert(schema);
    }
    for (name, r) in problem_responses() {
        components.responses.insert(name.into(), r);
    }
    components
        .responses
        .insert("Problem".into(), RefOr::T(any_problem()));

    // axum's `{*key}` (the rest of the path) is an ordinary `{key}` parameter in OpenAPI.
    let paths = std::mem::take(&mut doc.paths.paths);
    for (path, mut item) in paths {
        for op in operations(&mut item) {
            complete(op);
        }
        doc.paths.paths.insert(path.replace("{*", "{"), item);
    }
}

/// Adds the responses and security every operation of its kind has.
fn complete(op: &mut Operation) {
    let id = op.operation_id.clone().unwrap_or_default();
    let responses = &mut op.responses.responses;
    let mut add = |status: &str, name: &str| {
        responses
            .entry(status.to_string())
            .or_insert_with(|| response_ref(name));
    };
    if PUBLIC.contains(&id.as_str()) {
        op.security = Some(Vec::new());
    } else {
        if AGENTS.contains(&id.as_str()) {
            op.security = Some(vec![SecurityRequirement::new(
                "mutualTLS",
                Vec::<String>::new(),
            )]);
        }
        let has_input =
            op.parameters.as_ref().is_some_and(|p| !p.is_empty()) || op.request_body.is_some();
        if has_input {
            add("400", "BadRequest");
        }
        add("401", "Unauthenticated");
        add("403", "Forbidden");
        add("500", "Internal");
        add("503", "Unavailable");
        if let Some(RefOr::T(body)) = &op.request_body {
            add("413", "PayloadTooLarge");
            if matches!(body.required, Some(Required::True)) {
                add("415", "UnsupportedMediaType");
            }
        }
    }
    add("default", "Problem");
}

/// utoipa writes Rust's unsigned widths as formats (`u-int16`, ...) that JSON Schema does
/// not know: state them as the bounds they are, in standard terms.
fn integer_bounds(v: &mut Value) {
    match v {
        Value::Object(m) => {
            let max = match m.get("format").and_then(Value::as_str) {
                Some("uint8" | "u-int8") => Some(json!(u8::MAX)),
                Some("uint16" | "u-int16") => Some(json!(u16::MAX)),
                Some("uint32" | "u-int32") => Some(json!(u32::MAX)),
                Some("uint64" | "u-int64") => Some(json!(u64::MAX)),
                _ => None,
            };
            if let Some(max) = max {
                // A bound the code states (`limit` at most 1000) is kept.
                m.entry("minimum").or_insert(json!(0));
                m.entry("maximum").or_insert(max);
                m.remove("format");
            }
            m.values_mut().for_each(integer_bounds);
        }
        Value::Array(a) => a.iter_mut().for_each(integer_bounds),
        _ => {}
    }
}

/// Takes `null` out of a schema that allows it (`Option<T>`); says whether it did.
fn not_null(schema: &mut Value) -> bool {
    let null = json!({"type": "null"});
    if let Some(alts) = schema["oneOf"].as_array() {
        if alts.len() == 2 && alts.contains(&null) {
            let other = alts.iter().find(|a| **a != null).cloned().expect("two");
            *schema = other;
            return true;
        }
    }
    if let Some(types) = schema["type"].as_array() {
        if types.contains(&json!("null")) {
            let rest: Vec<Value> = types.iter().filter(|t| **t != "null").cloned().collect();
            schema["type"] = if rest.len() == 1 {
                rest[0].clone()
            } else {
                Value::Array(rest)
            };
            return true;
        }
    }
    false
}

/// The generated document.
pub fn build() -> OpenApi {
    let (_, mut doc) = super::documented().into_parts();
    finish(&mut doc);
    doc
}

/// The document as served: built on first use, then the same bytes for the process's life.
pub fn document_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        let mut doc = serde_json::to_value(build()).expect("the document serializes");
        beyond_the_derives(&mut doc);
        serde_json::to_string(&doc).expect("the document serializes")
    })
}

/// What the derives cannot say, stated on the generated JSON: rules across fields, and
/// `deny_unknown_fields` on the variants of an internally tagged enum (serde refuses
/// unknown fields there, utoipa leaves the variants open).
fn beyond_the_derives(doc: &mut Value) {
    integer_bounds(doc);
    let schemas = &mut doc["components"]["schemas"];
    // `deployments::resolve_targets`: at least one target, by name or by selector.
    schemas["CreateDeploymentRequest"]["anyOf"] = json!([
        {"required": ["servers"], "properties": {"servers": {"minItems": 1}}},
        {"required": ["selector"], "properties": {"selector": {"minItems": 1}}},
    ]);
    // `locks::LockTable`: a zero lease would lapse the instant it was granted (`ZeroTtl`).
    schemas["LockTtl"] = json!({
        "description": "A lease length: a Duration (see there) that is not zero, at most 30 days.",
        "type": "string",
        "pattern": "^(?=[0-9a-z]*[1-9])([0-9]{1,12}(ms|s|m|h|d))+$",
        "examples": ["60s"],
    });
    for request in ["AcquireLockRequest", "RenewLockRequest"] {
        schemas[request]["properties"]["ttl"]["$ref"] = json!("#/components/schemas/LockTtl");
    }
    // `tokens::create`: a service scope only for deployers.
    schemas["CreateTokenRequest"]["if"] =
        json!({"required": ["role"], "properties": {"role": {"enum": ["viewer", "admin"]}}});
    schemas["CreateTokenRequest"]["then"] = json!({"properties": {"services": {"maxItems": 0}}});
    for item in doc["paths"].as_object_mut().expect("paths").values_mut() {
        for op in item.as_object_mut().expect("a path item").values_mut() {
            // (`get_mut`, not indexing: `value["key"] = ...` would add `"key": null`.)
            // Query and header values are text: absent, never JSON `null` (`Option` fields).
            if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                for p in params.iter_mut().filter(|p| p["in"] != "path") {
                    if let Some(schema) = p.get_mut("schema") {
                        not_null(schema);
                    }
                }
            }
            // An optional body (`Option<T>` in `request_body`) is absent, not `null`.
            if let Some(body) = op.get_mut("requestBody") {
                if let Some(schema) = body.pointer_mut("/content/application~1json/schema") {
                    if not_null(schema) {
                        body["required"] = json!(false);
                    }
                }
            }
        }
    }
    // `deployments::events`: each event of the stream is a `deployment` event whose data is
    // a DeploymentView (as JSON text) and whose id is its `updated_at`.
    if let Some(stream) = doc.pointer_mut(
        "/paths/~1v1~1deployments~1{id}~1events/get/responses/200/content/text~1event-stream",
    ) {
        stream["schema"] = json!({
            "type": "object",
            "properties": {
                "event": {"const": "deployment"},
                "id": {"$ref": "#/components/schemas/Timestamp"},
                "data": {
                    "type": "string",
                    "contentMediaType": "application/json",
                    "contentSchema": {"$ref": "#/components/schemas/DeploymentView"},
                },
                "retry": {"type": "integer", "minimum": 0},
            },
            "required": ["data"],
        });
    }
    let schemas = &mut doc["components"]["schemas"];
    for variant in schemas["HealthCheck"]["oneOf"]
        .as_array_mut()
        .expect("HealthCheck is a oneOf")
    {
        variant["additionalProperties"] = json!(false);
    }
}

/// `GET /v1/openapi.json`.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    summary = "This document.",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = Object)),
)]
pub async fn document() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        document_json(),
    )
}

impl PartialSchema for crate::node::Empty {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some("An empty object."))
            .into()
    }
}

impl ToSchema for crate::node::Empty {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Empty")
    }
}

#[cfg(test)]
mod response_tests;
#[cfg(test)]
mod tests;
