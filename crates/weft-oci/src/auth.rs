//! Registry credentials: `WEFT_REGISTRY_USERNAME` / `WEFT_REGISTRY_PASSWORD`, else the Docker
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

/// The credentials to use for `registry` (`HOST[:PORT]`).
pub fn credentials(registry: &str) -> (RegistryAuth, AuthSource) {
    let user = std::env::var("WEFT_REGISTRY_USERNAME")
        .ok()
        .filter(|u| !u.is_empty());
    if let Some(user) = user {
        let password = std::env::var("WEFT_REGISTRY_PASSWORD").unwrap_or_default();
        return (RegistryAuth::Basic(user, password), AuthSource::Environment);
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
