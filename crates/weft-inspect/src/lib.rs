//! Pure facts about Wasm components and about how the components of a workload connect.
//!
//! * [`inspect`] reads a component (or core module): its imports and exports with versions and
//!   kinds, its world printed as WIT, its producers and its size. No engine, no compilation.
//! * [`plan`] decides, from the import and export names of a workload's components, which
//!   component satisfies each import (another component, or the host), in which order the
//!   components are instantiated, and refuses cycles, ambiguity and unsatisfied imports with
//!   messages that name the components and interfaces involved.
//!
//! Both are plain functions over bytes and names, so they are cheap to test and to fuzz.

mod info;
mod plan;

pub use info::{ComponentInfo, InspectError, Item, ItemKind, Producer, WasmKind, inspect};
pub use plan::{
    Edge, LinkPlan, PlanComponent, PlanError, PlanService, Provider, Resolution, interface_matches,
    plan, plan_with_service, split_version,
};
