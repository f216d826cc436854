import TuppManifest
import TuppPlan
import TuppRuntime

extension ContainerConfig {
    /// The runtime's view of a planned container, rooted at its snapshot.
    init(_ spec: ContainerSpec, rootfs: String) {
        self.init(
            name: spec.name, rootfs: rootfs, hostname: spec.hostname, namespaces: Set(spec.namespaces),
            mounts: spec.mounts, command: spec.command, env: spec.env, workdir: spec.workdir,
            restart: spec.restart, capabilities: spec.capabilities, stopTimeout: spec.stopTimeout)
        stopSignal = spec.stopSignal.number
        healthcheck = spec.healthcheck
        onUnhealthy = spec.onUnhealthy
    }
}
