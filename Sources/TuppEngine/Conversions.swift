import TuppPlan
import TuppRuntime
import TuppStorage

extension ContainerConfig {
    /// The runtime's view of a planned container, rooted at its snapshot.
    init(_ spec: ContainerSpec, rootfs: String) {
        self.init(
            name: spec.name, rootfs: rootfs, hostname: spec.hostname, namespaces: Set(spec.namespaces),
            mounts: spec.mounts, command: spec.command, env: spec.env, workdir: spec.workdir,
            restart: spec.restart, capabilities: spec.capabilities, stopTimeout: spec.stopTimeout)
    }
}

extension LayerEvent {
    init(_ p: LayerProgress) {
        let phase: Phase = switch p.phase {
        case .present: .present
        case .downloading: .downloading
        case .unpacking: .unpacking
        case .done: .done
        }
        self.init(index: p.index, count: p.count, digest: p.digest, phase: phase, bytes: p.bytes, total: p.total,
                  bytesPerSecond: p.bytesPerSecond)
    }
}
