//! Bind mounts and placement constraints of each service, kept for the check that the
//! bind sources exist on the nodes where the service may run (done by `deploy`, which
//! knows the nodes and the variables' values).

use super::super::model::{Compose, ServiceMounts, Volume};
use super::super::yaml::{Entry, Node};
use super::Checker;

/// The source of a bind mount once interpolated, as the Docker CLI's short-syntax parser
/// reads `SOURCE:TARGET[:MODE]`: a source that starts with `/`, `.` or `~` is a host path;
/// anything else (a named volume, or a lone target) is not a bind mount.
pub fn bind_source(volume: &Volume, interpolated: &str) -> Option<String> {
    match volume {
        Volume::Bind(_) => Some(interpolated.to_string()),
        Volume::Short(_) => {
            let (source, _) = interpolated.split_once(':')?;
            (source.starts_with('/') || source.starts_with('.') || source.starts_with('~'))
                .then(|| source.to_string())
        }
    }
}

impl Checker<'_> {
    pub(super) fn mounts(&mut self, top: &[Entry], compose: &mut Compose) {
        let Some(services) = top
            .iter()
            .find(|e| e.key == "services")
            .and_then(|s| s.value.entries())
        else {
            return;
        };
        for svc in services {
            let mut volumes = Vec::new();
            if let Some(Node::Seq { items, .. }) = svc.value.get("volumes").map(|v| &v.value) {
                for item in items {
                    match item {
                        Node::Scalar { .. } => {
                            if let Some(text) = item.as_str() {
                                // Known only once interpolated, or a host path already.
                                let maybe = text.contains('$')
                                    || bind_source(&Volume::Short(text.into()), text).is_some();
                                if maybe {
                                    volumes.push(Volume::Short(text.to_string()));
                                }
                            }
                        }
                        Node::Map { .. } => {
                            let ty = item.get("type").and_then(|t| t.value.as_str());
                            let source = item.get("source").and_then(|s| s.value.as_str());
                            if let (Some("bind"), Some(source)) = (ty, source) {
                                volumes.push(Volume::Bind(source.to_string()));
                            }
                        }
                        Node::Seq { .. } => {}
                    }
                }
            }
            if volumes.is_empty() {
                continue;
            }
            let constraints = svc
                .value
                .get("deploy")
                .and_then(|d| d.value.get("placement"))
                .and_then(|p| p.value.get("constraints"))
                .map(|c| match &c.value {
                    Node::Seq { items, .. } => items
                        .iter()
                        .filter_map(|i| i.as_str().map(String::from))
                        .collect(),
                    _ => Vec::new(),
                })
                .unwrap_or_default();
            compose.mounts.push(ServiceMounts {
                service: svc.key.clone(),
                volumes,
                constraints,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_syntax_sources() {
        let short = |t: &str| bind_source(&Volume::Short(t.into()), t);
        assert_eq!(short("/srv/data:/data:ro").as_deref(), Some("/srv/data"));
        assert_eq!(short("./data:/data").as_deref(), Some("./data"));
        assert_eq!(short("~/x:/x").as_deref(), Some("~/x"));
        assert_eq!(short("dbdata:/var/lib/db"), None);
        assert_eq!(short("/anonymous"), None);
        let long = Volume::Bind("/srv/${X}".into());
        assert_eq!(bind_source(&long, "/srv/a").as_deref(), Some("/srv/a"));
    }
}
