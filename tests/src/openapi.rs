//! Keeping a hand-written OpenAPI 3.1 document honest, for both daemons' documents: its
//! routes equal the router's, every `$ref` resolves, and real serialized values fit the
//! schemas that describe them.

use std::collections::BTreeSet;

use serde_json::{json, Value};

/// The HTTP methods an OpenAPI path item may hold.
pub const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

pub fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

pub fn resolve<'a>(d: &'a Value, r: &str) -> Option<&'a Value> {
    d.pointer(r.strip_prefix('#')?)
}

/// `// ...` comments removed, string literals kept.
pub fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    for line in src.lines() {
        let mut in_str = false;
        let mut prev = ' ';
        let mut cut = line.len();
        for (i, c) in line.char_indices() {
            if c == '"' && prev != '\\' {
                in_str = !in_str;
            } else if !in_str && c == '/' && prev == '/' {
                cut = i - 1;
                break;
            }
            prev = c;
        }
        out.push_str(&line[..cut]);
        out.push('\n');
    }
    out
}

/// The (method, path) pairs of every `.route("PATH", get(a).post(b)...)` call in `src`,
/// with axum's `{*rest}` wildcards written `{rest}` as OpenAPI does.
pub fn routes_in(src: &str) -> BTreeSet<(String, String)> {
    let src = strip_comments(src);
    let mut out = BTreeSet::new();
    let mut rest = src.as_str();
    while let Some(at) = rest.find(".route(") {
        rest = &rest[at + ".route(".len()..];
        // The call's text, up to its closing parenthesis.
        let (mut depth, mut in_str, mut end) = (1, false, None);
        let mut prev = ' ';
        for (i, c) in rest.char_indices() {
            match c {
                '"' if prev != '\\' => in_str = !in_str,
                '(' if !in_str => depth += 1,
                ')' if !in_str => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
            prev = c;
        }
        let call = &rest[..end.expect("unbalanced .route(")];
        let open = call.find('"').expect("a route path literal");
        let close = open + 1 + call[open + 1..].find('"').expect("closed literal");
        let path = call[open + 1..close].replace("{*", "{");
        let handlers = &call[close + 1..];
        let bytes = handlers.as_bytes();
        let mut found = 0;
        for m in METHODS {
            let mut from = 0;
            while let Some(i) = handlers[from..].find(m) {
                let i = from + i;
                from = i + m.len();
                let before_ok =
                    i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_');
                let after = handlers[from..].trim_start();
                if before_ok && after.starts_with('(') {
                    out.insert((m.to_string(), path.clone()));
                    found += 1;
                }
            }
        }
        assert!(found > 0, "no method found in .route({call})");
    }
    out
}

/// Why `v` does not fit `schema`: types, `enum`/`const`, `required`, properties not
/// declared (unless `additionalProperties` is a schema), arrays, `oneOf`, `anyOf`, `allOf`
/// (as `serde(flatten)` uses it), `$ref`. No patterns or bounds: this guards shape drift,
/// not value validation.
pub fn misfits(d: &Value, schema: &Value, v: &Value, at: &str, out: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let target = resolve(d, r).unwrap_or_else(|| panic!("dangling {r}"));
        misfits(d, target, v, at, out);
    }
    if let Some(parts) = schema.get("allOf").and_then(Value::as_array) {
        // `serde(flatten)`: one object whose properties are spread over the parts.
        let mut merged = json!({"type": "object", "properties": {}, "required": []});
        for part in parts {
            let part = match part.get("$ref").and_then(Value::as_str) {
                Some(r) => resolve(d, r).unwrap_or_else(|| panic!("dangling {r}")),
                None => part,
            };
            for (k, p) in part["properties"].as_object().into_iter().flatten() {
                merged["properties"][k] = p.clone();
            }
            for r in part["required"].as_array().into_iter().flatten() {
                merged["required"].as_array_mut().unwrap().push(r.clone());
            }
        }
        misfits(d, &merged, v, at, out);
    }
    if let Some(alts) = schema.get("anyOf").and_then(Value::as_array) {
        // Alternatives without a type only require fields (`servers` or `selector`).
        let fits = alts.iter().any(|s| {
            if s.get("type").is_some() || s.get("$ref").is_some() {
                let mut e = Vec::new();
                misfits(d, s, v, at, &mut e);
                e.is_empty()
            } else {
                s["required"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|r| v.get(r.as_str().unwrap_or_default()).is_some())
            }
        });
        if !fits {
            out.push(format!("{at}: {v} fits none of anyOf"));
        }
    }
    if let Some(alts) = schema.get("oneOf").and_then(Value::as_array) {
        let fitting = alts
            .iter()
            .filter(|s| {
                let mut e = Vec::new();
                misfits(d, s, v, at, &mut e);
                e.is_empty()
            })
            .count();
        if fitting != 1 {
            out.push(format!("{at}: {v} fits {fitting} of oneOf"));
        }
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let ok = types.iter().any(|t| match *t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => v.is_u64() || v.is_i64(),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            "null" => v.is_null(),
            _ => false,
        });
        if !ok {
            out.push(format!("{at}: {v} is not {types:?}"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array) {
        if !e.contains(v) {
            out.push(format!("{at}: {v} not in enum"));
        }
    }
    if let Some(c) = schema.get("const") {
        if c != v {
            out.push(format!("{at}: {v} is not {c}"));
        }
    }
    if let Value::Object(m) = v {
        let props = schema.get("properties").and_then(Value::as_object);
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let r = r.as_str().unwrap();
            if !m.contains_key(r) {
                out.push(format!("{at}: required {r} missing"));
            }
        }
        let extra = schema.get("additionalProperties");
        for (k, x) in m {
            let here = format!("{at}/{k}");
            match (props.and_then(|p| p.get(k)), extra) {
                (Some(s), _) => misfits(d, s, x, &here, out),
                (None, Some(s)) if s.is_object() => misfits(d, s, x, &here, out),
                // A type-checked object that declares properties must declare them all.
                (None, _) if props.is_some() || schema.get("type").is_some() => {
                    out.push(format!("{here}: not declared"));
                }
                (None, _) => {}
            }
        }
    }
    if let (Value::Array(a), Some(items)) = (v, schema.get("items")) {
        for (i, x) in a.iter().enumerate() {
            misfits(d, items, x, &format!("{at}/{i}"), out);
        }
    }
}

/// The (method, path) pairs a document describes.
pub fn documented_routes(d: &Value) -> BTreeSet<(String, String)> {
    d["paths"]
        .as_object()
        .expect("paths")
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .expect("a path item")
                .keys()
                .map(move |m| (m.clone(), p.clone()))
        })
        .collect()
}

/// Asserts the document describes exactly the routes `router_src` registers.
pub fn assert_routes_match(d: &Value, router_src: &str) {
    let router = routes_in(router_src);
    let documented = documented_routes(d);
    let missing: Vec<_> = router.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&router).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes not in the document: {missing:?}; documented but not routed: {extra:?}"
    );
}

/// Asserts every `$ref` of the document resolves; returns how many there are.
pub fn assert_refs_resolve(d: &Value) -> usize {
    let mut refs = Vec::new();
    collect_refs(d, &mut refs);
    for r in &refs {
        assert!(resolve(d, r).is_some(), "dangling $ref {r}");
    }
    refs.len()
}

/// Why `v` does not fit the component schema `schema` of `d` (empty: it fits).
pub fn misfits_of(d: &Value, schema: &str, v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let s = json!({ "$ref": format!("#/components/schemas/{schema}") });
    misfits(d, &s, v, schema, &mut out);
    out
}

/// Asserts `v` fits the component schema `schema` of `d`.
pub fn assert_fits(d: &Value, schema: &str, v: &Value) {
    let out = misfits_of(d, schema, v);
    assert!(
        out.is_empty(),
        "{schema} does not describe {v}:\n{}",
        out.join("\n")
    );
}

/// The schema `d` gives the `status` answer of `method path` in `content_type` (the
/// operation's response for that status, else its `default`), `$ref`s to components
/// followed; `None` when the document has no such answer or gives no schema for it.
pub fn response_schema<'a>(
    d: &'a Value,
    method: &str,
    path: &str,
    status: u16,
    content_type: &str,
) -> Option<&'a Value> {
    let responses = d["paths"].get(path)?.get(method)?.get("responses")?;
    let mut r = responses
        .get(status.to_string())
        .or_else(|| responses.get("default"))?;
    if let Some(target) = r.get("$ref").and_then(Value::as_str) {
        r = resolve(d, target)?;
    }
    let media = content_type.split(';').next().unwrap_or("").trim();
    r["content"]
        .as_object()?
        .iter()
        .find(|(k, _)| k.split(';').next().unwrap_or("").trim() == media)
        .and_then(|(_, c)| c.get("schema"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_parser_handles_chains_and_paths() {
        let src = r#"
            .route("/a", get(x::get).post(y::post))
            // .route("/commented", get(z))
            .route(
                "/b/{*key}",
                axum::routing::delete(b::remove)
                    .patch( b::renew ),
            )
            .route("/c", axum::routing::put(c::put_policy))
        "#;
        let got: Vec<_> = routes_in(src).into_iter().collect();
        let want = [
            ("delete", "/b/{key}"),
            ("get", "/a"),
            ("patch", "/b/{key}"),
            ("post", "/a"),
            ("put", "/c"),
        ];
        assert_eq!(
            got,
            want.map(|(m, p)| (m.to_string(), p.to_string())).to_vec()
        );
    }
}
