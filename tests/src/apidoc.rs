//! The API reference in `docs/api/`, rendered from the OpenAPI documents the daemons
//! serve: one Markdown page per API, endpoints first, then every schema.

use serde_json::Value;

/// The short type of a schema: a `$ref`'s name, a type (with `| null`), an array of a type,
/// an enum's values, or the alternatives of a `oneOf`.
fn type_of(s: &Value) -> String {
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let name = r.rsplit('/').next().unwrap_or(r);
        return format!("[`{name}`](#{})", name.to_lowercase());
    }
    if let Some(alts) = s.get("oneOf").and_then(Value::as_array) {
        return alts.iter().map(type_of).collect::<Vec<_>>().join(" \\| ");
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        return e
            .iter()
            .map(|v| format!("`{}`", v.as_str().map_or(v.to_string(), str::to_string)))
            .collect::<Vec<_>>()
            .join(", ");
    }
    if let Some(c) = s.get("const") {
        return format!("`{}`", c.as_str().map_or(c.to_string(), str::to_string));
    }
    let types: Vec<String> = match s.get("type") {
        Some(Value::String(t)) => vec![t.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => vec![],
    };
    let mut out: Vec<String> = types
        .iter()
        .map(|t| match t.as_str() {
            "array" => format!("array of {}", s.get("items").map_or("any".into(), type_of)),
            "object" => match s.get("additionalProperties") {
                Some(v) if v.is_object() => format!("map of {}", type_of(v)),
                _ => "object".into(),
            },
            other => other.to_string(),
        })
        .collect();
    if out.is_empty() {
        out.push("any".into());
    }
    out.join(" \\| ")
}

/// One line of text (a table cell): newlines folded, pipes escaped.
fn cell(s: &str) -> String {
    s.replace('\n', " ").replace('|', "\\|")
}

fn text(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// Renders `doc` as Markdown under `title`.
pub fn render(doc: &Value, title: &str) -> String {
    let mut out = String::new();
    out.push_str(&format!(
        "# {title}\n\n<!-- Generated from the document the daemon serves; do not edit. \
         `SLUICE_UPDATE_DOCS=1 cargo test -p sluice-coordinator --test docs` rewrites it. -->\n\n"
    ));
    out.push_str(&text(&doc["info"], "description"));
    out.push_str("\n\n## Endpoints\n\n| method | path | summary | answers |\n|---|---|---|---|\n");
    let paths = doc["paths"].as_object().cloned().unwrap_or_default();
    let mut ops = Vec::new();
    for (path, item) in &paths {
        for (method, op) in item.as_object().into_iter().flatten() {
            ops.push((path.clone(), method.clone(), op.clone()));
        }
    }
    for (path, method, op) in &ops {
        let codes: Vec<&String> = op["responses"]
            .as_object()
            .map_or(vec![], |r| r.keys().collect());
        out.push_str(&format!(
            "| {} | `{path}` | {} | {} |\n",
            method.to_uppercase(),
            cell(&text(op, "summary")),
            codes
                .iter()
                .map(|c| c.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    for (path, method, op) in &ops {
        out.push_str(&format!("\n### {} `{path}`\n\n", method.to_uppercase()));
        out.push_str(&text(op, "summary"));
        out.push('\n');
        let d = text(op, "description");
        if !d.is_empty() {
            out.push('\n');
            out.push_str(&d);
            out.push('\n');
        }
        if let Some(params) = op["parameters"].as_array() {
            out.push_str("\n| parameter | in | type | |\n|---|---|---|---|\n");
            for p in params {
                out.push_str(&format!(
                    "| `{}` | {} | {} | {} |\n",
                    text(p, "name"),
                    text(p, "in"),
                    type_of(&p["schema"]),
                    cell(&text(p, "description"))
                ));
            }
        }
        if let Some(content) = op["requestBody"]["content"].as_object() {
            for (media, c) in content {
                out.push_str(&format!("\nBody (`{media}`): {}\n", type_of(&c["schema"])));
            }
        }
        out.push_str("\n| answer | |\n|---|---|\n");
        for (code, r) in op["responses"].as_object().into_iter().flatten() {
            let r = match r.get("$ref").and_then(Value::as_str) {
                Some(p) => doc.pointer(p.trim_start_matches('#')).unwrap_or(r),
                None => r,
            };
            let what = r["content"]
                .as_object()
                .and_then(|c| c.values().next())
                .map_or(String::new(), |c| format!("{}: ", type_of(&c["schema"])));
            out.push_str(&format!(
                "| {code} | {what}{} |\n",
                cell(&text(r, "description"))
            ));
        }
    }
    out.push_str("\n## Schemas\n");
    for (name, s) in doc["components"]["schemas"]
        .as_object()
        .into_iter()
        .flatten()
    {
        out.push_str(&format!("\n### {name}\n\n"));
        let d = text(s, "description");
        if !d.is_empty() {
            out.push_str(&d);
            out.push_str("\n\n");
        }
        let required: Vec<&str> = s["required"]
            .as_array()
            .map_or(vec![], |r| r.iter().filter_map(Value::as_str).collect());
        match s["properties"].as_object() {
            Some(props) => {
                out.push_str("| field | type | required | |\n|---|---|---|---|\n");
                for (f, p) in props {
                    out.push_str(&format!(
                        "| `{f}` | {} | {} | {} |\n",
                        type_of(p),
                        if required.contains(&f.as_str()) {
                            "yes"
                        } else {
                            ""
                        },
                        cell(&text(p, "description"))
                    ));
                }
            }
            None => out.push_str(&format!("{}\n", type_of(s))),
        }
    }
    out
}
