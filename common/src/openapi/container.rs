//! Schemas of the container spec's validated values (`container::values`): each pattern
//! restates the parser named in its comment.

use std::borrow::Cow;

use utoipa::openapi::schema::{ObjectBuilder, Schema};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use super::{string, NO_CONTROL};
use crate::container::{
    ByteSize, Capability, ContainerPath, LabelKey, LogDriver, LogOptionKey, NetworkAlias,
    NetworkName, RestartPolicy, StopSignal, TmpfsMount, UserSpec, VolumeMount,
};

/// An absolute path without `:` (`values::abs_path`).
fn abs_path() -> String {
    format!("/{}{{0,4095}}", NO_CONTROL.replace("\\u009F]", "\\u009F:]"))
}

// `values::abs_path`.
schema!(
    ContainerPath,
    "ContainerPath",
    string("An absolute path inside the container: `/`, then no `:` and no control characters; at most 4096 bytes.")
        .pattern(Some(format!("^{}$", abs_path())))
        .min_length(Some(1))
        .max_length(Some(4096))
        .examples(["/srv/app"])
);

// `values::user`.
schema!(
    UserSpec,
    "UserSpec",
    string("The user to run as, `user[:group]`, each a name or id of 1-32 characters of `A-Za-z0-9 _ . -`, not starting with `.` or `-`.")
        .pattern(Some("^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?$"))
        .examples(["1000:1000"])
);

// `values::volume`.
schema!(
    VolumeMount,
    "VolumeMount",
    string("A mount `source:/target[:ro|rw]`: the source is a named volume (a letter or digit, then `A-Za-z0-9 _ . -`, at most 255) or, only where the server's policy allows host mounts, an absolute host path; paths contain no `:`.")
        .pattern(Some(format!(
            "^([A-Za-z0-9][A-Za-z0-9_.-]{{0,254}}|{p}):{p}(:(ro|rw))?$",
            p = abs_path()
        )))
        .examples(["pg-data:/var/lib/postgresql/data"])
);

// `values::capability`.
schema!(
    Capability,
    "Capability",
    string("A Linux capability as Docker names it (`NET_ADMIN`): an upper-case letter, then `A-Z 0-9 _`, at most 64.")
        .pattern(Some("^[A-Z][A-Z0-9_]{0,63}$"))
        .examples(["NET_ADMIN"])
);

// `values::tmpfs`.
schema!(
    TmpfsMount,
    "TmpfsMount",
    string("A tmpfs mount `/path[:options]`, options 1-256 characters of `A-Za-z0-9 = , _ . -`.")
        .pattern(Some(format!(
            "^{}(:[A-Za-z0-9=,_.-]{{1,256}})?$",
            abs_path()
        )))
        .examples(["/tmp:size=64m"])
);

// `values::parse_bytes`.
schema!(
    ByteSize,
    "ByteSize",
    string("A size `<n>[b|k|m|g]` in binary units (`512m` is 512 MiB): at most 15 digits without a unit or with `b`, 12 with `k`, 9 with `m`, 6 with `g`.")
        .pattern(Some("^([0-9]{1,15}[bB]?|[0-9]{1,12}[kK]|[0-9]{1,9}[mM]|[0-9]{1,6}[gG])$"))
        .examples(["512m"])
);

// `values::restart`.
schema!(
    RestartPolicy,
    "RestartPolicy",
    string(
        "Docker's restart policy: `no`, `always`, `unless-stopped` or `on-failure[:N]` (N 1-999)."
    )
    .pattern(Some(
        "^(no|always|unless-stopped|on-failure(:[1-9][0-9]{0,2})?)$"
    ))
    .examples(["unless-stopped"])
);

// `values::network`.
schema!(
    NetworkName,
    "NetworkName",
    string("A Docker network name: a letter or digit, then `A-Za-z0-9 _ . -`, at most 64; not `bridge`, `host`, `none` or `default` (network modes).")
        .pattern(Some("^(?!(bridge|host|none|default)$)[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"))
        .examples(["backend"])
);

// `values::alias`.
schema!(
    NetworkAlias,
    "NetworkAlias",
    string("A DNS alias on a network: an RFC 1123 label.")
        .pattern(Some("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))
        .examples(["web"])
);

// `values::label_key`.
schema!(
    LabelKey,
    "LabelKey",
    string("A container label key: a letter or digit, then `A-Za-z0-9 _ . - /`, at most 128; the `sluice.` prefix (any case) is reserved.")
        .pattern(Some("^(?![Ss][Ll][Uu][Ii][Cc][Ee]\\.)[A-Za-z0-9][A-Za-z0-9_./-]{0,127}$"))
        .examples(["com.example.team"])
);

// `values::signal`.
schema!(
    StopSignal,
    "StopSignal",
    string("A signal: `SIG` and 2-8 characters of `A-Z 0-9` (optionally `+N`, as in `SIGRTMIN+3`), or a number 1-64.")
        .pattern(Some("^(SIG[A-Z0-9]{2,8}(\\+[0-9]{1,2})?|[1-9]|[1-5][0-9]|6[0-4])$"))
        .examples(["SIGTERM"])
);

// `values::log_name`.
schema!(
    LogDriver,
    "LogDriver",
    string("A Docker log driver: a letter or digit, then `A-Za-z0-9 _ . -`, at most 64.")
        .pattern(Some("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"))
        .examples(["json-file"])
);

// `values::log_name`.
schema!(
    LogOptionKey,
    "LogOptionKey",
    string("A log driver option: a letter or digit, then `A-Za-z0-9 _ . -`, at most 64.")
        .pattern(Some("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"))
        .examples(["max-size"])
);
