//! Protobuf messages and ttrpc services of the containerd shim v2 protocol.
//!
//! The `.proto` files in `proto/` are our own, wire-compatible with
//! containerd's (same packages, names and field numbers). Code is generated
//! at build time into `OUT_DIR` (see `build.rs`) and included below.
//!
//! Type URLs of `Any` values must be bare (`containerd.events.TaskExit`):
//! build and read them with [`any`], never with protobuf's `Any::pack`,
//! `Any::is` or `Any::unpack`.

#![deny(unsafe_code)]

pub use protobuf;
pub use protobuf::well_known_types::{any::Any, empty::Empty, timestamp::Timestamp};

pub mod any;
pub mod time;

/// Includes a generated file from `OUT_DIR/gen/<name>.rs` as module `name`.
///
/// The `allow`s replace the inner attributes the generator wrote at the top
/// of the file (stripped by `build.rs`). Generated code refers to its
/// siblings as `super::<name>`, so all these modules sit at the crate root.
macro_rules! generated {
    ($(#[$meta:meta])* $vis:vis mod $name:ident { $($extra:item)* }) => {
        $(#[$meta])*
        #[allow(
            dead_code,
            missing_docs,
            non_camel_case_types,
            non_snake_case,
            non_upper_case_globals,
            trivial_casts,
            unused_imports,
            unused_mut,
            unused_results,
            clippy::all
        )]
        $vis mod $name {
            include!(concat!(env!("OUT_DIR"), "/gen/", stringify!($name), ".rs"));
            $($extra)*
        }
    };
}

generated! {
    /// `containerd.types.Mount`; use it through [`types`].
    mod mount {}
}

generated! {
    /// Shared types: `containerd.v1.types` (`Status`, `ProcessInfo`) and
    /// `containerd.types.Mount`.
    pub mod types {
        pub use crate::mount::Mount;
    }
}

generated! {
    /// `containerd.task.v2` messages (task API v2 and v3).
    pub mod task {}
}

generated! {
    /// `containerd.task.v2.Task` service: [`task_ttrpc::TaskClient`], the
    /// server trait [`task_ttrpc::Task`] and [`task_ttrpc::create_task`].
    /// Methods a server does not override answer UNIMPLEMENTED.
    pub mod task_ttrpc {}
}

generated! {
    /// `containerd.task.v3` descriptor only; its service uses [`task`] messages.
    mod task_v3 {}
}

generated! {
    /// `containerd.task.v3.Task` service (containerd 2.x), same methods and
    /// messages as [`task_ttrpc`] under another service name.
    pub mod task_v3_ttrpc {}
}

generated! {
    /// `containerd.events` task events (`TaskCreate`, `TaskExit`, ...).
    pub mod events {}
}

generated! {
    /// `containerd.services.events.ttrpc.v1` messages: `ForwardRequest`, `Envelope`.
    pub mod ttrpc_events {}
}

generated! {
    /// `containerd.services.events.ttrpc.v1.Events` service:
    /// [`ttrpc_events_ttrpc::EventsClient`], server trait
    /// [`ttrpc_events_ttrpc::Events`] and [`ttrpc_events_ttrpc::create_events`].
    pub mod ttrpc_events_ttrpc {}
}

generated! {
    /// `containerd.runc.v1`: `Options`, `CheckpointOptions`, `ProcessDetails`.
    pub mod runc_options {}
}

generated! {
    /// `io.containerd.cgroups.v1` statistics (`Metrics` tree).
    pub mod cgroups_v1 {}
}

generated! {
    /// `io.containerd.cgroups.v2` statistics (`Metrics` tree).
    pub mod cgroups_v2 {}
}

generated! {
    /// `containerd.runtime.bootstrap.v1` (containerd 2.3+ `start`):
    /// `BootstrapParams`, `Extension`, `LogLevel`, `BootstrapResult`, `Capability`.
    pub mod bootstrap {}
}

generated! {
    /// `containerd.types.RuntimeInfo` / `RuntimeVersion`, printed by `-info`.
    pub mod introspection {}
}
