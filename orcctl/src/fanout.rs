//! Running one call on many nodes (`--nodes a,b,c`) at once, and reporting:
//! results in node order, failures after the successes were shown.

use std::future::Future;

use futures::future::join_all;

use crate::error::CliError;

/// Runs `f` for every node at once; results in node order.
pub async fn fan<T, F, Fut>(nodes: &[String], f: F) -> Vec<(String, Result<T, CliError>)>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, CliError>>,
{
    let results = join_all(nodes.iter().map(|n| f(n.clone()))).await;
    nodes.iter().cloned().zip(results).collect()
}

/// Connects to every node with `connect` and makes the unary call `f` on
/// each, at once; results in node order, errors naming their node.
pub async fn call<C, T, Conn, CFut, F, Fut>(nodes: &[String], connect: Conn, f: F) -> Vec<(String, Result<T, CliError>)>
where
    Conn: Fn(String) -> CFut,
    CFut: Future<Output = Result<C, CliError>>,
    F: Fn(C) -> Fut,
    Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    let (connect, f) = (&connect, &f);
    fan(nodes, |n| async move {
        let c = connect(n.clone()).await?;
        f(c).await.map(|r| r.into_inner()).map_err(|s| CliError::from_status(&n, s))
    })
    .await
}

/// Prints failures to stderr and returns the first, after the successes were shown.
pub fn split<T>(results: Vec<(String, Result<T, CliError>)>) -> (Vec<(String, T)>, Option<CliError>) {
    let mut ok = vec![];
    let mut first_err = None;
    for (n, r) in results {
        match r {
            Ok(v) => ok.push((n, v)),
            Err(e) => {
                if first_err.is_some() {
                    eprintln!("orcctl: {e}");
                } else {
                    first_err = Some(e);
                }
            }
        }
    }
    (ok, first_err)
}

/// The command's result: the first failure, if any.
pub fn done(err: Option<CliError>) -> Result<(), CliError> {
    err.map_or(Ok(()), Err)
}
