//! The coordinator: consistent-hash routing of handles to workers, membership, failover
//! and the job API. Empty until its issue lands; the crate exists so the workspace shows
//! the architecture of shared/DESIGN.md.
