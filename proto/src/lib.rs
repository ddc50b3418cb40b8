//! orc's gRPC API.
//!
//! # Layout
//! - `machine`: `orc.machine.v1`, the per-node Machine service.
#![allow(clippy::all)]

pub mod machine {
    tonic::include_proto!("orc.machine.v1");
}
