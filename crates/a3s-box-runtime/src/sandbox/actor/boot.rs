//! Booting the sandbox's VM on a task of its own (so the actor keeps
//! answering meanwhile): start it through the [`SandboxVmm`], connect to
//! its agent port, send `Boot` (with a standalone box's container and main
//! process: one round trip), and check the guest's `Hello`. The guest's
//! frames are then read by a task that forwards them to the actor.

use std::sync::Arc;
use std::time::Duration;

use a3s_box_core::guest::message::{
    BootSpec, ContainerSpec, GuestMessage, HostMessage, Message, ProcessSpec,
};
use a3s_box_core::guest::{Frame, PROTOCOL_VERSION};
use a3s_box_core::{BoxError, Result};
use tokio::sync::mpsc::UnboundedSender;

use super::{Actor, Msg, Running, Vm};
use crate::guest::{self, FrameReader};
use crate::sandbox::container::Phase;
use crate::sandbox::router::MAIN_PROCESS;
use crate::sandbox::vmm::{channel_lost, vm_error, vm_gone, BootedVm, SandboxVmm, VmRequest};
use crate::storage::StorageOptions;

/// Time for the VM to create its agent socket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The virtio-fs tag of a pod's image share.
pub(crate) const IMAGE_TAG: &str = "a3s-images";

/// What `Boot` carries beyond the sandbox: the first container.
struct First {
    id: String,
    hostname: String,
    main: ProcessSpec,
}

impl Actor {
    /// What the sandbox's VM is made of.
    fn vm_request(&self) -> Option<VmRequest> {
        if let Some(pod) = &self.pod {
            let r = &pod.sandbox.resources;
            return Some(VmRequest {
                id: self.id.clone(),
                dir: self.dir.clone(),
                vcpus: r.vcpus,
                memory_mib: r.memory_mib,
                kernel: pod.sandbox.vm.kernel.clone(),
                accel: pod.sandbox.vm.accel.to_string(),
                debug: pod.sandbox.vm.debug_guest,
                root_dir: pod.root_dir.clone(),
                storage: StorageOptions::default(),
                image_share: Some(IMAGE_TAG.into()),
                control: self.control,
                name: Some(pod.name.clone()),
                network: Some(pod.sandbox.network.clone()),
                // A pod's networks are set at pod create.
                spare_nics: 0,
            });
        }
        let c = self.containers.values().next()?;
        let o = &c.setup.options;
        Some(VmRequest {
            id: self.id.clone(),
            dir: self.dir.clone(),
            vcpus: o.vcpus,
            memory_mib: o.memory_mib,
            kernel: o.kernel.clone(),
            accel: o.accel.clone(),
            debug: o.debug,
            root_dir: o.rootfs_dir.clone(),
            storage: o.storage.clone(),
            image_share: None,
            control: self.control,
            // A box renamed while it ran boots under its new name.
            name: self
                .records
                .as_ref()
                .and_then(|r| r.store.load_dir(&c.setup.dir).ok())
                .map(|r| r.config.container().name.clone())
                .unwrap_or_else(|| o.network.as_ref().and_then(|(name, _)| name.clone())),
            // A stopped box's storage helpers need no network.
            network: o
                .network
                .as_ref()
                .filter(|_| !o.builtin)
                .map(|(_, spec)| spec.clone()),
            spare_nics: self.engine.network.spare_nics,
        })
    }

    /// Boot the VM (again): a standalone box's with its container.
    pub(super) fn boot(&mut self) {
        let Some(req) = self.vm_request() else {
            return;
        };
        self.gen += 1;
        let gen = self.gen;
        let first = match self.is_pod() {
            true => None,
            false => self.containers.values_mut().next().map(|c| {
                c.phase = Phase::Starting;
                c.process = Some(MAIN_PROCESS);
                c.started_this_run = false;
                First {
                    id: c.setup.id.clone(),
                    hostname: c.hostname(),
                    main: c.main_process(MAIN_PROCESS, true),
                }
            }),
        };
        if let Some(first) = &first {
            self.router.main_started(&first.id, MAIN_PROCESS);
        }
        let vmm = self.vmm.clone();
        let tx = self.tx.clone();
        let timeout = self.engine.boot_timeout;
        let sandbox = self.id.clone();
        let task = tokio::spawn(async move {
            match boot_vm(vmm, &req, sandbox, first, timeout).await {
                Ok((running, reader, events)) => {
                    let _ = tx.send(Msg::Booted {
                        gen,
                        result: Ok(running),
                    });
                    forward_frames(reader, tx.clone(), gen);
                    if let Some(mut events) = events {
                        tokio::spawn(async move {
                            while let Some(event) = events.recv().await {
                                if tx.send(Msg::Vm { gen, event }).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                }
                Err(e) => {
                    let _ = tx.send(Msg::Booted {
                        gen,
                        result: Err(e),
                    });
                }
            }
        });
        self.vm = Vm::Booting { gen, task };
    }

    /// A boot ended.
    pub(super) async fn on_booted(&mut self, gen: u64, result: Result<Box<Running>>) {
        if !matches!(self.vm, Vm::Booting { gen: g, .. } if g == gen) {
            return; // abandoned
        }
        match result {
            Ok(running) => {
                let vm_pid = running.handler.pid();
                self.vm = Vm::Up { gen, running };
                let early = std::mem::take(&mut self.early);
                self.send_frames(early).await;
                if self.is_pod() {
                    self.pod_booted(vm_pid).await;
                }
            }
            Err(e) => {
                self.vm = Vm::Down;
                self.early.clear();
                self.on_vm_down_error(e).await;
            }
        }
    }
}

/// Start the VM, connect, boot the guest.
async fn boot_vm(
    vmm: Arc<dyn SandboxVmm>,
    req: &VmRequest,
    sandbox: String,
    first: Option<First>,
    boot_timeout: Duration,
) -> Result<(
    Box<Running>,
    FrameReader,
    Option<tokio::sync::mpsc::UnboundedReceiver<crate::sandbox::vmm::VmEvent>>,
)> {
    let BootedVm {
        mut handler,
        agent_socket,
        console,
        root_fstype,
        storage,
        control,
        events,
        network,
        companions,
        accelerator,
    } = vmm.boot(req).await?;
    let connected = guest::connect(&agent_socket, CONNECT_TIMEOUT, || handler.is_running()).await;
    let (mut reader, mut writer) = match connected {
        Ok(pair) => pair,
        Err(e) => {
            // The connection is retried while the VM runs: a VM that died
            // is the reason, not the missing socket.
            let err = match handler.is_running() {
                true => e,
                false => vm_gone(&*handler, &console),
            };
            let _ = handler.stop(libc::SIGKILL, 0);
            return Err(err);
        }
    };
    let (container, main) = match first {
        Some(f) => (
            Some(Box::new(ContainerSpec {
                hostname: f.hostname,
                ..crate::sandbox::container::boot_container(&f.id, &root_fstype, &storage)
            })),
            Some(Box::new(f.main)),
        ),
        None => (None, None),
    };
    let boot = BootSpec {
        sandbox,
        clock: Some(guest::seed::wall_clock()),
        entropy: guest::seed::fresh_entropy()?,
        network: network.map(Box::new),
        container,
        main,
    };
    // The boot spec goes out at once, before the guest's hello: it waits
    // in the channel and guest-init reads it right after saying hello,
    // which saves a round trip. The hello is still checked before any
    // output is trusted.
    let sent = writer
        .send(&Frame::Control(Message::Host(HostMessage::Boot(boot))))
        .await;
    if let Err(e) = sent {
        let err = channel_lost(&*handler, format!("lost the guest channel: {e}"), &console).await;
        let _ = handler.stop(libc::SIGKILL, 0);
        return Err(err);
    }
    let hello = tokio::time::timeout(boot_timeout, reader.next()).await;
    let fail = |e: BoxError, handler: &mut Box<dyn a3s_box_core::VmHandler>| {
        let _ = handler.stop(libc::SIGKILL, 0);
        Err(e)
    };
    match hello {
        Err(_) => {
            let e = vm_error(
                format!(
                    "the VM did not become ready within {}s",
                    boot_timeout.as_secs()
                ),
                &console,
            );
            return fail(e, &mut handler);
        }
        Ok(Ok(Some(Frame::Control(Message::Guest(GuestMessage::Hello { version, kernel }))))) => {
            if version != PROTOCOL_VERSION {
                let e = BoxError::Guest(format!(
                    "guest-init speaks protocol {version}, this a3s-box speaks {PROTOCOL_VERSION}: rebuild the initramfs (make setup)"
                ));
                return fail(e, &mut handler);
            }
            tracing::debug!(%kernel, "guest ready");
        }
        Ok(Ok(Some(other))) => {
            let e = BoxError::Guest(format!("expected hello, got {other:?}"));
            return fail(e, &mut handler);
        }
        Ok(Ok(None)) => {
            let e = channel_lost(
                &*handler,
                "the VM stopped before the workload finished".into(),
                &console,
            )
            .await;
            return fail(e, &mut handler);
        }
        Ok(Err(e)) => {
            let e = channel_lost(
                &*handler,
                format!("bad frame from the guest: {e}"),
                &console,
            )
            .await;
            return fail(e, &mut handler);
        }
    }
    let clean_shutdown = storage.needs_clean_shutdown();
    let running = Box::new(Running {
        handler,
        writer,
        console,
        control,
        companions,
        clean_shutdown,
        storage,
        accelerator,
    });
    Ok((running, reader, events))
}

/// Read the guest's frames on a task of their own, so the actor never
/// loses a half-read frame. Bad frames that leave the stream in sync are
/// logged and skipped. The guest sends within its credit, so the queue
/// stays bounded.
fn forward_frames(mut reader: FrameReader, tx: UnboundedSender<Msg>, gen: u64) {
    tokio::spawn(async move {
        loop {
            let frame = match reader.next().await {
                Ok(Some(frame)) => Ok(frame),
                Ok(None) => break,
                Err(e) if e.is_recoverable() => {
                    tracing::warn!("skipping a bad frame from the guest: {e}");
                    continue;
                }
                Err(e) => Err(e.to_string()),
            };
            let end = frame.is_err();
            if tx.send(Msg::Guest { gen, frame }).is_err() || end {
                return;
            }
        }
        let _ = tx.send(Msg::GuestEnd { gen });
    });
}
