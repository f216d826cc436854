import TuppManifest
import TuppPlan
import TuppRuntime
import TuppSystem

extension ContainerConfig {
    /// The runtime's view of a planned container, rooted at its snapshot, in a cgroup of
    /// the installation. A seccomp profile file is read here, at start.
    init(_ spec: ContainerSpec, rootfs: String, installation: String) throws {
        let k = spec.confinement
        let seccomp: SeccompPolicy
        switch k.seccomp {
        case .default: seccomp = .default
        case .unconfined: seccomp = .unconfined
        case .profile(let path): seccomp = .profile(try SeccompProfile.load(path: path))
        }
        self.init(
            name: spec.name, rootfs: rootfs, hostname: spec.hostname, namespaces: Set(spec.namespaces),
            mounts: spec.mounts, command: spec.command, env: spec.env, workdir: spec.workdir,
            restart: spec.restart, capabilities: spec.capabilities, stopTimeout: spec.stopTimeout,
            ambientCapabilities: k.ambient, user: k.user, readOnly: k.readOnly,
            shmSize: k.shmSize.map { Int($0) } ?? (64 << 20), ulimits: k.ulimits, devices: k.devices,
            seccomp: seccomp, resources: k.resources, cgroup: try CgroupPlacement.installation(installation))
    }
}
