//! Registry credentials: `WEFT_REGISTRY_USERNAME` / `WEFT_REGISTRY_PASSWORD` for the registries
//! `WEFT_REGISTRY_HOST` names, else the Docker
//! config (`$DOCKER_CONFIG/config.json` or `~/.docker/config.json`, including credential
//! helpers), else anonymous.

use oci_client::secrets::RegistryAuth;

/// Where a registry's credentials came from (for messages; never the secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthSource {
    Environment,
    DockerConfig,
    /// Given by the caller ([`crate::Credentials::Basic`]).
    Configured,
    Anonymous,
}

impl AuthSource {
    pub fn describe(self) -> &'static str {
        match self {
            AuthSource::Environment => "WEFT_REGISTRY_USERNAME/WEFT_REGISTRY_PASSWORD",
            AuthSource::DockerConfig => "the Docker config",
            AuthSource::Configured => "the configured credentials",
            AuthSource::Anonymous => "no credentials",
        }
    }
}

/// Whether the environment's credentials are for `registry`: `WEFT_REGISTRY_HOST` names it
/// (`HOST[:PORT]`, comma-separated, any case). Without that they go nowhere, so a manifest
/// naming another registry (`oci://attacker.example/x:1`) cannot collect them.
pub fn env_credentials_for(registry: &str, hosts: Option<&str>) -> bool {
    hosts.is_some_and(|h| {
        h.split(',')
            .map(str::trim)
            .any(|h| !h.is_empty() && h.eq_ignore_ascii_case(registry))
    })
}

/// The credentials to use for `registry` (`HOST[:PORT]`).
pub fn credentials(registry: &str) -> (RegistryAuth, AuthSource) {
    let user = std::env::var("WEFT_REGISTRY_USERNAME")
        .ok()
        .filter(|u| !u.is_empty());
    if let Some(user) = user {
        let hosts = std::env::var("WEFT_REGISTRY_HOST").ok();
        if env_credentials_for(registry, hosts.as_deref()) {
            let password = std::env::var("WEFT_REGISTRY_PASSWORD").unwrap_or_default();
            return (RegistryAuth::Basic(user, password), AuthSource::Environment);
        }
        tracing::warn!(
            registry,
            "WEFT_REGISTRY_USERNAME is set but WEFT_REGISTRY_HOST does not name this registry; \
             not sending those credentials to it"
        );
    }
    match docker_credential::get_credential(registry) {
        Ok(docker_credential::DockerCredential::UsernamePassword(user, password)) => (
            RegistryAuth::Basic(user, password),
            AuthSource::DockerConfig,
        ),
        Ok(docker_credential::DockerCredential::IdentityToken(token)) => {
            (RegistryAuth::Bearer(token), AuthSource::DockerConfig)
        }
        Err(e) => {
            tracing::debug!(registry, error = %e, "no Docker credentials; anonymous");
            (RegistryAuth::Anonymous, AuthSource::Anonymous)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::env_credentials_for;
    use proptest::prelude::*;

    #[test]
    fn environment_credentials_go_only_to_named_registries() {
        assert!(env_credentials_for(
            "127.0.0.1:5000",
            Some("127.0.0.1:5000")
        ));
        assert!(env_credentials_for("Ghcr.io", Some("quay.io, ghcr.io")));
        assert!(!env_credentials_for("ghcr.io", None));
        assert!(!env_credentials_for("ghcr.io", Some("")));
        assert!(!env_credentials_for(
            "ghcr.io.evil.example",
            Some("ghcr.io")
        ));
        assert!(!env_credentials_for("ghcr.io:443", Some("ghcr.io")));
    }

    proptest! {
        /// A registry gets them only when the list has an entry equal to it (any case).
        #[test]
        fn only_an_equal_entry_sends_them(reg in "[a-z0-9.:-]{1,20}", list in proptest::collection::vec("[a-zA-Z0-9.:-]{0,20}", 0..4)) {
            let joined = list.join(",");
            let expected = list.iter().any(|h| !h.trim().is_empty() && h.trim().eq_ignore_ascii_case(&reg));
            prop_assert_eq!(env_credentials_for(&reg, Some(&joined)), expected);
        }
    }
}
