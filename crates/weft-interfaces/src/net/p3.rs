//! The WASI 0.3 (`wasi:sockets@0.3.0`) overrides: the same rules as [`super::add_p2_overrides`],
//! through wasmtime-wasi's P3 host functions.
//!
//! Shadowed in `wasi:sockets/types@0.3.0`: `[static]tcp-socket.create` and
//! `[static]udp-socket.create` (the socket budget), the `tcp-socket` and `udp-socket` resource
//! destructors (the budget again), `[method]tcp-socket.bind` (the service's virtual loopback
//! ports) and `[method]tcp-socket.connect` (redirects, the virtual loopback, refusals); in
//! `wasi:sockets/ip-name-lookup@0.3.0`: `resolve-addresses` (name-by-name grants). `listen`,
//! accepting, and every UDP address go through the address check that
//! [`super::NetPolicy::install`] puts in the store's WASI context, as for 0.2 guests.
//!
//! `connect` and `resolve-addresses` are `async func`s in WIT: they are defined with
//! `func_wrap_concurrent` and call wasmtime-wasi's own `HostTcpSocketWithStore::connect` and
//! `ip_name_lookup::HostWithStore::resolve_addresses` through an accessor projected onto
//! [`WasiSockets`], so the socket itself is wasmtime-wasi's, unchanged.

use std::future::Future;
use std::net::SocketAddr;
use std::task::{Context, Poll, Waker};

use wasmtime::component::{Accessor, Linker, Resource, ResourceType};
use wasmtime_wasi::p3::bindings::sockets::ip_name_lookup::{
    ErrorCode as LookupErrorCode, HostWithStore as LookupHostWithStore,
};
use wasmtime_wasi::p3::bindings::sockets::types::{
    ErrorCode, HostTcpSocket, HostTcpSocketWithStore, HostUdpSocket, IpAddress, IpAddressFamily,
    IpSocketAddress,
};
use wasmtime_wasi::p3::sockets::SocketError;
use wasmtime_wasi::sockets::{TcpSocket, UdpSocket, WasiSockets, WasiSocketsView};
use weft_policy::sockets::SocketUse;

use super::{ConnectPlan, NetStore, NetView, VirtualNet};

/// The `wasi:sockets` package version of wasmtime-wasi 48's WASI 0.3 (`p3`) implementation.
const P3_SOCKETS: &str = "0.3.0";

/// What a 0.3 guest gets when the workload's socket budget is spent. WASI 0.3 has no
/// `new-socket-limit` code (0.2 has), so it is `other` with the 0.2 name.
fn budget_exhausted() -> ErrorCode {
    ErrorCode::Other(Some("new-socket-limit".to_string()))
}

fn p3_result<T>(r: Result<T, SocketError>) -> wasmtime::Result<Result<T, ErrorCode>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(e) => Ok(Err(e.downcast()?)),
    }
}

/// Polls `fut` once. wasmtime-wasi's `bind` is an `async fn` only because of the address check,
/// and the check this crate installs answers at once, so one poll completes it; `None` if it
/// did not (never expected).
fn ready_now<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// The accessor wasmtime-wasi's P3 socket functions take.
fn sockets_accessor<T: NetView + 'static>(accessor: &Accessor<T>) -> Accessor<T, WasiSockets> {
    accessor.with_getter::<WasiSockets>(<T as WasiSocketsView>::sockets)
}

/// Binds a component's socket to an ephemeral loopback port and records its address as a
/// member of the workload's virtual loopback (the service accepts only members).
fn join_virtual<T: NetView>(
    state: &mut T,
    net: &NetStore,
    this: &Resource<TcpSocket>,
    vnet: &VirtualNet,
    addr: SocketAddr,
) -> wasmtime::Result<Result<(), ErrorCode>> {
    let ephemeral = SocketAddr::new(addr.ip(), 0);
    net.approve(SocketUse::TcpBind, ephemeral);
    let bound = ready_now(HostTcpSocket::bind(
        &mut state.sockets(),
        Resource::new_borrow(this.rep()),
        ephemeral.into(),
    ));
    net.withdraw(SocketUse::TcpBind, ephemeral);
    match bound {
        Some(r) => {
            if let Err(code) = p3_result(r)? {
                return Ok(Err(code));
            }
        }
        None => {
            return Ok(Err(ErrorCode::Other(Some(
                "virtual loopback: bind did not complete".to_string(),
            ))));
        }
    }
    match p3_result(HostTcpSocket::get_local_address(
        &mut state.sockets(),
        Resource::new_borrow(this.rep()),
    ))? {
        Ok(local) => {
            vnet.add_member(local.into());
            Ok(Ok(()))
        }
        Err(code) => Ok(Err(code)),
    }
}

/// Shadows the `wasi:sockets@0.3.0` functions listed in the module docs with the rule-checking
/// versions. Call after `wasmtime_wasi::p3::add_to_linker`.
pub fn add_p3_overrides<T: NetView + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    let mut types = linker.instance(&format!("wasi:sockets/types@{P3_SOCKETS}"))?;
    // Socket budget: count creations, release on drop.
    types.func_wrap_async(
        "[static]tcp-socket.create",
        |mut store: wasmtime::StoreContextMut<'_, T>, (family,): (IpAddressFamily,)| {
            Box::new(async move {
                let net = store.data().net().clone();
                if !net.admit_creation().await {
                    return Ok((Err(budget_exhausted()),));
                }
                let state = store.data_mut();
                let created = HostTcpSocket::create(&mut state.sockets(), family);
                Ok((p3_result(net.settle(created))?,))
            })
        },
    )?;
    types.func_wrap_async(
        "[static]udp-socket.create",
        |mut store: wasmtime::StoreContextMut<'_, T>, (family,): (IpAddressFamily,)| {
            Box::new(async move {
                let net = store.data().net().clone();
                if !net.admit_creation().await {
                    return Ok((Err(budget_exhausted()),));
                }
                let state = store.data_mut();
                let created = HostUdpSocket::create(&mut state.sockets(), family).await;
                Ok((p3_result(net.settle(created))?,))
            })
        },
    )?;
    types.resource(
        "tcp-socket",
        ResourceType::host::<TcpSocket>(),
        |mut store, rep| {
            let state = store.data_mut();
            state.net().clone().uncount(rep);
            HostTcpSocket::drop(&mut state.sockets(), Resource::new_own(rep))
        },
    )?;
    types.resource(
        "udp-socket",
        ResourceType::host::<UdpSocket>(),
        |mut store, rep| {
            let state = store.data_mut();
            state.net().clone().uncount(rep);
            HostUdpSocket::drop(&mut state.sockets(), Resource::new_own(rep))
        },
    )?;
    types.func_wrap_async(
        "[method]tcp-socket.bind",
        |mut store: wasmtime::StoreContextMut<'_, T>,
         (this, local): (Resource<TcpSocket>, IpSocketAddress)| {
            Box::new(async move {
                let state = store.data_mut();
                let addr = SocketAddr::from(local);
                let net = state.net().clone();
                if !net.policy.as_ref().is_some_and(|p| p.is_virtual_bind(addr)) {
                    let r = HostTcpSocket::bind(&mut state.sockets(), this, local).await;
                    return Ok((p3_result(r)?,));
                }
                // The service binds the workload's 127.0.0.1:PORT: bind an ephemeral host port
                // instead and remember the mapping.
                let ephemeral = SocketAddr::new(addr.ip(), 0);
                net.approve(SocketUse::TcpBind, ephemeral);
                let again = Resource::<TcpSocket>::new_borrow(this.rep());
                let r = HostTcpSocket::bind(&mut state.sockets(), this, ephemeral.into()).await;
                net.withdraw(SocketUse::TcpBind, ephemeral);
                if let Err(code) = p3_result(r)? {
                    return Ok((Err(code),));
                }
                let real = match p3_result(HostTcpSocket::get_local_address(
                    &mut state.sockets(),
                    again,
                ))? {
                    Ok(a) => SocketAddr::from(a),
                    Err(code) => return Ok((Err(code),)),
                };
                net.register_virtual(addr.port(), real);
                Ok((Ok(()),))
            })
        },
    )?;
    types.func_wrap_concurrent(
        "[method]tcp-socket.connect",
        |accessor: &Accessor<T>, (this, remote): (Resource<TcpSocket>, IpSocketAddress)| {
            Box::pin(async move {
                let addr = SocketAddr::from(remote);
                let net = accessor.with(|mut access| access.data_mut().net().clone());
                let target = match net.plan_connect(addr) {
                    ConnectPlan::Direct(target) | ConnectPlan::Redirect(target) => target,
                    ConnectPlan::Deny => {
                        // Still validate the handle, as the real call would.
                        accessor.with(|mut access| {
                            access.data_mut().ctx().table.get(&this).map(|_| ())
                        })?;
                        return Ok((Err(ErrorCode::AccessDenied),));
                    }
                    ConnectPlan::Virtual { vnet, real } => {
                        let joined = accessor.with(|mut access| {
                            join_virtual(access.data_mut(), &net, &this, &vnet, addr)
                        })?;
                        if let Err(code) = joined {
                            return Ok((Err(code),));
                        }
                        net.approve(SocketUse::TcpConnect, real);
                        real
                    }
                };
                let sockets = sockets_accessor(accessor);
                let result = <WasiSockets as HostTcpSocketWithStore<T>>::connect(
                    &sockets,
                    this,
                    target.into(),
                )
                .await;
                if result.is_err() && target != addr {
                    // The approval may not have been used: drop it, so it cannot let a later
                    // connect to the host side of a redirect through (fail closed).
                    net.withdraw(SocketUse::TcpConnect, target);
                }
                Ok((p3_result(result)?,))
            })
        },
    )?;
    let mut lookup = linker.instance(&format!("wasi:sockets/ip-name-lookup@{P3_SOCKETS}"))?;
    lookup.func_wrap_concurrent(
        "resolve-addresses",
        |accessor: &Accessor<T>, (name,): (String,)| {
            Box::pin(async move {
                let policy = accessor.with(|mut access| access.data_mut().net().policy.clone());
                if let Some(policy) = policy
                    && !policy.lookup_allowed(&name)
                {
                    return Ok((Err(LookupErrorCode::AccessDenied),));
                }
                let sockets = sockets_accessor(accessor);
                let found: Result<Vec<IpAddress>, LookupErrorCode> =
                    <WasiSockets as LookupHostWithStore<T>>::resolve_addresses(&sockets, name)
                        .await?;
                Ok((found,))
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
