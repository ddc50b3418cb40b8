//! Container networking on a node (the networking issue, landing in
//! parts): so far, addresses.
//!
//! - [`ipam`]: the container CIDR split into per-node subnets, and a
//!   node's addresses within its subnet.

pub mod ipam;
