//! Secret environment values at rest: the API seals each `secret: true` value before the
//! deployment is proposed (bound to `env/SERVICE/NAME`), and the leader opens them only to
//! build the agent's deploy request. A stored value reads `sealed:KEY:NONCE:CIPHERTEXT`; a
//! record from before sealing (no prefix) is passed on as it is.

use std::collections::BTreeMap;

use sluice_common::api::EnvVar;
use sluice_common::names::{EnvName, ServiceName};

use super::{SealError, Sealed, Secrets};

const PREFIX: &str = "sealed:";

fn context(service: &ServiceName, name: &EnvName) -> String {
    format!("env/{service}/{name}")
}

/// Seals every secret value of `env` in place (nothing without a key file).
pub fn seal(
    secrets: &Secrets,
    service: &ServiceName,
    env: &mut BTreeMap<EnvName, EnvVar>,
) -> Result<(), SealError> {
    let Some(ring) = secrets.ring() else {
        return Ok(());
    };
    for (name, var) in env.iter_mut().filter(|(_, v)| v.secret) {
        if var.value.starts_with(PREFIX) {
            continue;
        }
        let s = ring.seal(&context(service, name), &var.value)?;
        var.value = format!("{PREFIX}{}:{}:{}", s.key, s.nonce, s.ct);
    }
    Ok(())
}

/// Whether a secret value of `env` is sealed under a key other than `current`, or not
/// sealed at all though a key exists: it wants sealing again.
pub fn stale(env: &BTreeMap<EnvName, EnvVar>, current: &str) -> bool {
    env.values().filter(|v| v.secret).any(|v| {
        v.value
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split(':').next())
            .is_none_or(|key| key != current)
    })
}

/// `env` with every secret value sealed again under the current key (opened first).
pub fn reseal(
    secrets: &Secrets,
    service: &ServiceName,
    env: &BTreeMap<EnvName, EnvVar>,
) -> Result<BTreeMap<EnvName, EnvVar>, SealError> {
    let plain = open(secrets, service, env)?;
    let mut out: BTreeMap<EnvName, EnvVar> = env
        .iter()
        .map(|(name, var)| {
            let value = plain.get(name).cloned().unwrap_or_default();
            (
                name.clone(),
                EnvVar {
                    value,
                    secret: var.secret,
                },
            )
        })
        .collect();
    seal(secrets, service, &mut out)?;
    Ok(out)
}

/// Every value in plaintext, secret ones opened: what the agent receives.
pub fn open(
    secrets: &Secrets,
    service: &ServiceName,
    env: &BTreeMap<EnvName, EnvVar>,
) -> Result<BTreeMap<EnvName, String>, SealError> {
    env.iter()
        .map(|(name, var)| {
            let value = match var.value.strip_prefix(PREFIX).filter(|_| var.secret) {
                Some(rest) => {
                    let mut parts = rest.splitn(3, ':');
                    let (Some(key), Some(nonce), Some(ct)) =
                        (parts.next(), parts.next(), parts.next())
                    else {
                        return Err(SealError::Corrupt("?".into()));
                    };
                    let sealed = Sealed {
                        key: key.into(),
                        nonce: nonce.into(),
                        ct: ct.into(),
                    };
                    secrets.open(&context(service, name), &super::Stored::Sealed(sealed))?
                }
                None => var.value.clone(),
            };
            Ok((name.clone(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_values_seal_and_open_plain_ones_stay() {
        let ring = Secrets::new(super::super::Keyring::new(vec![("k1".into(), [3; 32])]));
        let svc = ServiceName::parse("web").unwrap();
        let mut env = BTreeMap::new();
        let n = |s: &str| EnvName::parse(s).unwrap();
        env.insert(
            n("PLAIN"),
            EnvVar {
                value: "hello".into(),
                secret: false,
            },
        );
        env.insert(
            n("TOKEN"),
            EnvVar {
                value: "sup3r-s3cret".into(),
                secret: true,
            },
        );
        let before = env.clone();
        seal(&ring, &svc, &mut env).unwrap();
        assert_eq!(env[&n("PLAIN")].value, "hello");
        assert!(env[&n("TOKEN")].value.starts_with("sealed:k1:"));
        assert!(!serde_json::to_string(&env)
            .unwrap()
            .contains("sup3r-s3cret"));
        let opened = open(&ring, &svc, &env).unwrap();
        assert_eq!(opened[&n("TOKEN")], "sup3r-s3cret");
        assert_eq!(opened[&n("PLAIN")], "hello");
        // Sealing twice changes nothing; a pre-sealing record opens as it is.
        let again = env.clone();
        seal(&ring, &svc, &mut env).unwrap();
        assert_eq!(env, again);
        assert_eq!(
            open(&ring, &svc, &before).unwrap()[&n("TOKEN")],
            "sup3r-s3cret"
        );
        // Bound to the service: another one cannot open it.
        let other = ServiceName::parse("api").unwrap();
        assert!(open(&ring, &other, &env).is_err());
        // Without a key file nothing is sealed.
        let mut plain = before.clone();
        seal(&Secrets::default(), &svc, &mut plain).unwrap();
        assert_eq!(plain, before);
    }

    #[test]
    fn a_rotated_key_reseals_what_the_old_one_sealed() {
        let k1 = ("k1".to_string(), [3; 32]);
        let old = Secrets::new(super::super::Keyring::new(vec![k1.clone()]));
        let both = Secrets::new(super::super::Keyring::new(vec![k1, ("k2".into(), [4; 32])]));
        let current = both.ring().unwrap().current().to_string();
        assert_eq!(current, "k2");
        let svc = ServiceName::parse("web").unwrap();
        let n = |s: &str| EnvName::parse(s).unwrap();
        let mut env = BTreeMap::from([
            (
                n("PLAIN"),
                EnvVar {
                    value: "hello".into(),
                    secret: false,
                },
            ),
            (
                n("TOKEN"),
                EnvVar {
                    value: "s3cret".into(),
                    secret: true,
                },
            ),
        ]);
        assert!(stale(&env, "k1"), "plain though a key exists");
        seal(&old, &svc, &mut env).unwrap();
        assert!(!stale(&env, "k1"));
        assert!(stale(&env, &current));
        let resealed = reseal(&both, &svc, &env).unwrap();
        assert!(resealed[&n("TOKEN")].value.starts_with("sealed:k2:"));
        assert_eq!(resealed[&n("PLAIN")].value, "hello");
        assert!(!stale(&resealed, &current));
        assert_eq!(open(&both, &svc, &resealed).unwrap()[&n("TOKEN")], "s3cret");
    }
}
