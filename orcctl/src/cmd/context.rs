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
                    json!({"current": cfg.current_context, "contexts": cfg.contexts.iter().map(|(n, c)| json!({"name": n, "endpoints": c.endpoints})).collect::<Vec<_>>()})
                ),
                Output::Table => table(
                    &["CURRENT", "NAME", "ENDPOINTS"],
                    &cfg.contexts
                        .iter()
                        .map(|(n, c)| {
                            vec![
                                if *n == cfg.current_context { "*".into() } else { String::new() },
                                n.clone(),
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
        // Needs a manager: `super::user::renew`.
        ContextCommand::Renew => Ok(()),
    }
}
