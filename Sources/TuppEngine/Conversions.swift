import TuppBase
import TuppFacts
import TuppManifest
import TuppPlan
import TuppRuntime
import TuppStorage
import TuppSystem

extension ContainerConfig {
    /// The runtime's view of a planned container, rooted at its snapshot, in a cgroup of
    /// the installation. A seccomp profile file is read here, at start. The rootfs is
    /// POOL/containers/NAME (ImageStore's layout), so a volume mount becomes a bind of
    /// POOL/volumes/VOLUME: the runtime knows only host paths.
    init(_ spec: ContainerSpec, rootfs: String, installation: String) throws {
        let k = spec.confinement
        let seccomp: SeccompPolicy
        switch k.seccomp {
        case .default: seccomp = .default
        case .unconfined: seccomp = .unconfined
        case .profile(let path): seccomp = .profile(try SeccompProfile.load(path: path))
        }
        let volumes = Paths.dirname(Paths.dirname(rootfs)) + "/volumes"
        self.init(
            name: spec.name, rootfs: rootfs, hostname: spec.hostname, namespaces: Set(spec.namespaces),
            mounts: spec.mounts.map { Self.resolve($0, volumes: volumes) }, command: spec.command, env: spec.env,
            workdir: spec.workdir, restart: spec.restart, capabilities: spec.capabilities, stopTimeout: spec.stopTimeout,
            ambientCapabilities: k.ambient, user: k.user, readOnly: k.readOnly,
            shmSize: k.shmSize.map { Int($0) } ?? (64 << 20), ulimits: k.ulimits, devices: k.devices,
            seccomp: seccomp, resources: k.resources, cgroup: try CgroupPlacement.installation(installation),
            userNamespace: spec.userNamespace, delegateCgroup: spec.delegateCgroup)
        stopSignal = spec.stopSignal.number
        healthcheck = spec.healthcheck
        onUnhealthy = spec.onUnhealthy
    }

    /// A volume mount as the bind of its subvolume; other mounts as they are.
    static func resolve(_ mount: Mount, volumes: String) -> Mount {
        guard mount.kind == .volume, let name = mount.source else { return mount }
        return Mount(kind: .bind, source: "\(volumes)/\(name)", target: mount.target, options: mount.options, readonly: mount.readonly)
    }
}
