//! volsec's integration tests, in one binary: every module runs the real `volsec` binary or
//! the libraries against real filesystems, real xattrs and real gRPC servers on Unix
//! sockets. They run as root (CI does); a test that needs what the machine lacks says why.

// Tests set up children between fork and exec, wait for them with their rusage, and make
// device nodes: libc calls the product itself makes only in `volsec_core::sys`.
#![allow(unsafe_code)]

mod common;

mod agent_bounds;
mod agent_packaging;
mod agent_service;
mod apply_smoke;
mod attack_mode_swap;
mod attack_mount_swap;
mod attack_symlink_swap;
mod bench_baseline;
mod bench_compare;
mod bench_run;
mod bench_tree;
mod container_image;
mod csi_probe;
mod csi_proxy;
mod flag_bounds;
mod init_container;
mod json_schema;
mod kubelet_conformance;
mod layout;
mod man_completions;
mod output_escape;
mod ownership_errors;
mod ownership_mounts;
mod ownership_tree;
mod plan_apply;
mod plan_bad_input;
mod plan_bounds;
mod plan_csi;
mod plan_engine;
mod plan_fixtures;
mod plan_identity;
mod selinux_refused;
mod selinux_relabel;
mod slow_fs;
mod sys_fallback;
mod volume_lock;
mod walk_scale;
