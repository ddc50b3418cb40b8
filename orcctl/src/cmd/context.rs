//! `orcctl context …`: orcctl's own contexts (endpoints, CA, certificate).

use serde_json::json;

use crate::cli::{ContextCommand, Output};
use crate::config::Config;
use crate::error::CliError;
use crate::output::table;

pub fn run(path: &std::path::Path, cmd: ContextCommand, out: Output) -> Result<(), CliError> {
    let mut cfg = Config::load_or_default(path)?;
    match cmd {
        ContextCommand::Ls => {
            match out {
                Output::Json => println!(
                    "{}",
                    json!({"current": cfg.current_context, "contexts": cfg.contexts.iter().map(|(n, c)| json!({"name": n, "endpoints": c.endpoints, "namespace": c.namespace.as_deref().unwrap_or(orc_proto::DEFAULT_NAMESPACE)})).collect::<Vec<_>>()})
                ),
                Output::Table => table(
                    &["CURRENT", "NAME", "NAMESPACE", "ENDPOINTS"],
                    &cfg.contexts
                        .iter()
                        .map(|(n, c)| {
                            vec![
                                if *n == cfg.current_context { "*".into() } else { String::new() },
                                n.clone(),
                                c.namespace.clone().unwrap_or_else(|| orc_proto::DEFAULT_NAMESPACE.into()),
                                c.endpoints.join(","),
                            ]
                        })
                        .collect::<Vec<_>>(),
                ),
            }
            Ok(())
        }
        ContextCommand::Use { name } => {
            cfg.context(path, Some(&name))?;
            cfg.current_context = name;
            cfg.save(path)?;
            Ok(())
        }
        ContextCommand::Namespace { name } => {
            let current = cfg.current_context.clone();
            let ctx = cfg.contexts.get_mut(&current).ok_or_else(|| {
                CliError::Usage(format!("no current context in {}; `orcctl context use NAME` first", path.display()))
            })?;
            ctx.namespace = name.filter(|n| n != orc_proto::DEFAULT_NAMESPACE);
            let shown = ctx.namespace.clone().unwrap_or_else(|| orc_proto::DEFAULT_NAMESPACE.into());
            cfg.save(path)?;
            match out {
                Output::Json => println!("{}", json!({"context": current, "namespace": shown})),
                Output::Table => println!("context {current} works in namespace {shown}"),
            }
            Ok(())
        }
        // Needs a manager: `super::user::renew`.
        ContextCommand::Renew => Ok(()),
    }
}
