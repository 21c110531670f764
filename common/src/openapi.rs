//! OpenAPI schemas of the validated types (feature `openapi`).
//!
//! The structs and enums of [`crate::api`], [`crate::agent_api`] and [`crate::audit`] derive
//! `utoipa::ToSchema`; the types below parse their input by hand (`try_from = "String"`, a
//! custom `Deserialize`), so a derive could only say "a string". Their schemas are written
//! here instead, each stating every rule its parser enforces — the limits are the parsers'
//! (read the function named in each comment before changing one). The coordinator's tests
//! check that serialized values fit them and that the enums list every variant.
//!
//! They live in one file, not beside each parser, so the pure modules carry no OpenAPI code.

use std::borrow::Cow;

use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, Schema, SchemaFormat, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::api::TokenName;
use crate::deployment::{DeploymentState, Phase, SubState};
use crate::image::ImageRef;
use crate::locks::FencingToken;
use crate::names::{EnvName, Holder, Label, LockKey, ServerName, ServiceName};
use crate::ports::{Port, PortRange};
use crate::problem::{ErrorCode, Problem};
use crate::time::{DurationSpec, Timestamp};

/// Any character but the Unicode control characters (`char::is_control`: Cc, U+0000–U+001F
/// and U+007F–U+009F).
const NO_CONTROL: &str = r"[^\u0000-\u001F\u007F-\u009F]";

/// A 16-bit port number, 1–65535 (as a regex: no leading zeros beyond `0*`).
const PORT_NUMBER: &str =
    "0*([1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";

/// `impl ToSchema` under `name` with the schema `build` returns.
macro_rules! schema {
    ($ty:ty, $name:literal, $build:expr) => {
        impl PartialSchema for $ty {
            fn schema() -> RefOr<Schema> {
                let b: ObjectBuilder = $build;
                b.into()
            }
        }
        impl ToSchema for $ty {
            fn name() -> Cow<'static, str> {
                Cow::Borrowed($name)
            }
        }
    };
}

fn string(description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some(description))
}

fn integer(description: &str, minimum: u64, maximum: u64) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .description(Some(description))
        .minimum(Some(minimum))
        .maximum(Some(maximum))
}

/// An enum of strings, listed in the order of `all` as serde writes them.
fn strings<T: serde::Serialize>(description: &str, all: &[T]) -> ObjectBuilder {
    string(description).enum_values(Some(
        all.iter()
            .map(|v| serde_json::to_value(v).expect("an enum serializes")),
    ))
}

/// An RFC 1123 DNS label (`names::check_dns_label`).
fn dns_label(description: &str, example: &str) -> ObjectBuilder {
    string(description)
        .pattern(Some("^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"))
        .min_length(Some(1))
        .max_length(Some(63))
        .examples([example])
}

schema!(
    ServiceName,
    "ServiceName",
    dns_label(
        "A service name: an RFC 1123 DNS label, 1-63 characters of `a-z 0-9 -`, not starting \
         or ending with `-` (`api`, `billing-worker`); upper case is refused, not folded.",
        "api"
    )
);

schema!(
    ServerName,
    "ServerName",
    dns_label(
        "A server name: an RFC 1123 DNS label, 1-63 characters of `a-z 0-9 -`, not starting \
         or ending with `-`; the name its agent certificate carries.",
        "web-1"
    )
);

// `names::EnvName`.
schema!(
    EnvName,
    "EnvName",
    string(
        "An environment variable name: a letter or `_`, then letters, digits and `_`; at \
         most 255 characters."
    )
    .pattern(Some("^[A-Za-z_][A-Za-z0-9_]*$"))
    .min_length(Some(1))
    .max_length(Some(255))
    .examples(["DATABASE_URL"])
);

// `names::LockKey`: segments of `a-z 0-9 - _ .`, none empty, `.` or `..`.
schema!(
    LockKey,
    "LockKey",
    string(
        "A lock key: 1-253 characters of `/`-separated segments made of `a-z 0-9 - _ .`; \
         empty, `.` and `..` segments are refused. Deployments take `service/<name>`."
    )
    .pattern(Some(
        r"^(?!\.\.?(/|$))[a-z0-9._-]+(/(?!\.\.?(/|$))[a-z0-9._-]+)*$"
    ))
    .min_length(Some(1))
    .max_length(Some(253))
    .examples(["service/api", "migration/billing-db"])
);

// `names::Holder`: not blank (after trimming whitespace), 1-128 characters, no controls.
schema!(
    Holder,
    "Holder",
    string(
        "Who holds a lock: free text of 1-128 characters, not only whitespace, no control \
         characters."
    )
    .pattern(Some(format!(r"^(?!\s*$){NO_CONTROL}+$")))
    .min_length(Some(1))
    .max_length(Some(128))
    .examples(["ci-job-4711"])
);

// `names::Label::parse`.
schema!(
    Label,
    "Label",
    string("A server label `key=value`: key and value each 1-63 characters of `a-z 0-9 - _ .`.")
        .pattern(Some("^[a-z0-9._-]{1,63}=[a-z0-9._-]{1,63}$"))
        .min_length(Some(3))
        .max_length(Some(127))
        .examples(["env=prod"])
);

// `image::ImageRef::parse` (the Docker reference grammar of distribution/reference).
schema!(
    ImageRef,
    "ImageRef",
    string(
        "A Docker image reference `[registry[:port]/]repository[:tag][@digest]`, at most 512 \
         characters: the repository is `/`-separated components of `a-z 0-9` joined by \
         `.`, `_`, `__` or dashes (at most 255 characters with the registry), the tag 1-128 \
         characters of `A-Za-z0-9 _ . -` not starting with `.` or `-`, the digest \
         `algorithm:hex` (`sha256:` and 64 lower-case hex digits)."
    )
    .pattern(Some(format!(
        "{IMAGE_NAME_LENGTH}{}",
        IMAGE_REF.replace("{PORT}", REGISTRY_PORT)
    )))
    .min_length(Some(1))
    .max_length(Some(512))
    .examples(["registry.example.com/web:1.4.2"])
);

/// The reference grammar (`{PORT}` stands for [`REGISTRY_PORT`]) `image::ImageRef::parse` implements. The first `/`-separated part
/// is a registry when it has a `.` or `:` or is `localhost`: then it must be a host name
/// with an optional port; otherwise it is a repository component like the others.
const IMAGE_REF: &str = concat!(
    "^(",
    // A registry: host labels of `A-Za-z0-9 -` with a `.` and an optional port 0-65535, or
    // one label and a port, or `localhost`.
    r"([a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?)+(:{PORT})?",
    r"|[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?:{PORT}|localhost)/",
    // Or none, and then the first part does not look like one.
    r"|(?![^/@]*[.:][^/@]*/)(?!localhost/)",
    ")",
    r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*",
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?",
    r"(@(sha256:[0-9a-f]{64}|(?!sha256:)[A-Za-z][A-Za-z0-9+._-]*:[0-9a-fA-F]{32,}))?$",
);

/// The name (registry and repository) is at most 255 characters: some split of the text
/// into a prefix of 1-255 characters, a tag and a digest exists (the name is such a prefix).
const IMAGE_NAME_LENGTH: &str = "(?=.{1,255}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@.*)?$)";

/// A registry port, 0-65535.
const REGISTRY_PORT: &str =
    "0*([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])";

// `deployment::Phase::new`.
schema!(
    Phase,
    "Phase",
    string("Free-text progress within a state: at most 200 characters, no control characters.")
        .pattern(Some(format!("^{NO_CONTROL}*$")))
        .max_length(Some(200))
        .examples(["pulling image"])
);

// `time::Timestamp`: written by `format_rfc3339_millis`, read by `parse_rfc3339_weak`.
schema!(
    Timestamp,
    "Timestamp",
    string(
        "An instant in RFC 3339, UTC (`Z`; offsets are refused), a real calendar date in the \
         years 1970-9999; sent with milliseconds (`2026-11-25T10:30:00.000Z`)."
    )
    .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
    .pattern(Some(
        "^(19[7-9][0-9]|[2-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])\
         T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\\.[0-9]{1,9})?Z$"
    ))
    .examples(["2026-11-25T10:30:00.000Z"])
);

// `time::DurationSpec::parse`: groups of at most 12 digits and a unit, at most 30 days.
schema!(
    DurationSpec,
    "Duration",
    string(
        "A duration written as `<number><unit>` groups (units `ms`, `s`, `m`, `h`, `d`; at \
         most 12 digits a group), e.g. `250ms`, `30s`, `5m`, `1h30m`, `2d`; at most 30 days \
         in total (`30d`, `720h`). Bare numbers are refused."
    )
    .pattern(Some("^([0-9]{1,12}(ms|s|m|h|d))+$"))
    .min_length(Some(2))
    .examples(["30s"])
);

// `ports::Port::new`.
schema!(
    Port,
    "Port",
    integer("A TCP port, 1-65535.", 1, u64::from(u16::MAX)).examples([8080])
);

// `ports::PortRange::parse`: `start-end`, both 1-65535, start <= end.
schema!(
    PortRange,
    "PortRange",
    string("An inclusive port range `start-end`: both bounds 1-65535, start not greater than end.")
        .pattern(Some(format!("^{PORT_NUMBER}-{PORT_NUMBER}$")))
        .min_length(Some(3))
        .examples(["20000-32000"])
);

// `api::TokenName::parse`.
schema!(
    TokenName,
    "TokenName",
    string(
        "A token name: 1-64 characters of `a-z 0-9 . _ -`, starting with a letter or digit; \
         never reused."
    )
    .pattern(Some("^[a-z0-9][a-z0-9._-]*$"))
    .min_length(Some(1))
    .max_length(Some(64))
    .examples(["ci"])
);

schema!(
    FencingToken,
    "FencingToken",
    integer(
        "A fencing token: the Raft log index of the entry that granted the lock.",
        0,
        u64::MAX
    )
);

schema!(
    DeploymentState,
    "DeploymentState",
    strings(
        "Where a deployment stands: `pending` (waiting for its lock), `validating` \
         (pre-flight checks), `in_progress`, then one of the final `success`, `failed`, \
         `rolled_back`.",
        &DeploymentState::ALL
    )
);

schema!(
    SubState,
    "DeploymentSubState",
    strings(
        "Where a deployment stands within its state: `waiting` (pending), `running` \
         (validating, in_progress), `cancel_requested` (pending, validating, in_progress), \
         `done` (success, failed, rolled_back: final), `noop` (success: nothing was touched), \
         `rollback_due` and `rolling_back` (failed after touching servers, or success with a \
         manual rollback asked for), `gave_up` (failed or success: a rollback could not \
         restore the previous version, or the deployment lost its lock; an operator must act).",
        &SubState::ALL
    )
);

/// Every code, in declaration order.
pub fn every_error_code() -> Vec<ErrorCode> {
    ErrorCode::ALL.to_vec()
}

schema!(ErrorCode, "ErrorCode", {
    let usual: Vec<String> = every_error_code()
        .into_iter()
        .map(|c| format!("{} {}", c.as_str(), c.status()))
        .collect();
    strings(
        &format!(
            "Stable machine-readable error code (never renamed once released). Usual \
             statuses: {}.",
            usual.join(", ")
        ),
        &every_error_code(),
    )
});

/// A property `$ref`ing a component, with its own description.
fn reference<T: ToSchema>(description: &str) -> RefOr<Schema> {
    let mut r = utoipa::openapi::Ref::from_schema_name(T::name());
    r.description = description.to_string();
    RefOr::Ref(r)
}

// `problem::Problem` (its extensions are flattened: the object stays open).
schema!(Problem, "Problem", {
    let field_error = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "field",
            string("A JSON pointer or dotted path to the field (`/image`, `env.DATABASE_URL`)."),
        )
        .required("field")
        .property("message", string("What is wrong with it."))
        .required("message");
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some(
            "RFC 9457 problem details (`application/problem+json`). Clients branch on `code`. \
             Extension members are flattened into the object; those documented here are the \
             ones the coordinator sends today, more may be added.",
        ))
        .property(
            "type",
            string("`urn:sluice:problem:<code>`.").pattern(Some("^urn:sluice:problem:[a-z_]+$")),
        )
        .required("type")
        .property("title", string("Short, constant per code."))
        .required("title")
        .property("status", integer("The HTTP status.", 400, 599))
        .required("status")
        .property(
            "code",
            RefOr::Ref(utoipa::openapi::Ref::from_schema_name(ErrorCode::name())),
        )
        .required("code")
        .property(
            "detail",
            string("What happened this time, for a human. Omitted when empty."),
        )
        .property(
            "instance",
            string("The request path, when known (unknown routes and wrong methods)."),
        )
        .property(
            "errors",
            utoipa::openapi::schema::ArrayBuilder::new()
                .items(field_error)
                .description(Some(
                    "Invalid fields, when the problem is bad input. Omitted when empty.",
                )),
        )
        .property(
            "holder",
            reference::<Holder>("Extension (lock_held): the current holder."),
        )
        .property(
            "reason",
            string("Extension (lock_held): why the holder took the lock."),
        )
        .property(
            "token",
            reference::<FencingToken>("Extension (lock_held): the current grant's fencing token."),
        )
        .property(
            "expires_at",
            reference::<Timestamp>(
                "Extension (lock_held): when the current lease lapses unless renewed.",
            ),
        )
        .property(
            "current_token",
            reference::<FencingToken>(
                "Extension (lock_not_held on a token mismatch): the current grant's token.",
            ),
        )
        .property(
            "server",
            reference::<ServerName>("Extension (ports_exhausted): the server."),
        )
        .property(
            "range",
            reference::<PortRange>("Extension (ports_exhausted): its range."),
        )
        .property(
            "outcome_unknown",
            ObjectBuilder::new()
                .schema_type(Type::Boolean)
                .description(Some(
                    "Extension (unavailable): the write timed out or could not be forwarded and \
                 may still commit; do not retry blindly.",
                )),
        )
        .property(
            "deployment",
            string("Extension (idempotency_key_reused): the deployment created under that key.")
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
        )
});

impl Problem {
    /// The schemas [`Problem`]'s schema refers to (for a document's components).
    pub fn referenced_schemas() -> Vec<(String, RefOr<Schema>)> {
        vec![
            (ErrorCode::name().into(), ErrorCode::schema()),
            (Holder::name().into(), Holder::schema()),
            (FencingToken::name().into(), FencingToken::schema()),
            (Timestamp::name().into(), Timestamp::schema()),
            (ServerName::name().into(), ServerName::schema()),
            (PortRange::name().into(), PortRange::schema()),
        ]
    }
}

mod container;
