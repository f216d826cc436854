import TuppBase
import TuppManifest
import TuppPlan
import TuppRuntime

extension ContainerConfig {
    /// The runtime's view of a planned container, rooted at its snapshot. The rootfs is
    /// POOL/containers/NAME (ImageStore's layout), so a volume mount becomes a bind of
    /// POOL/volumes/VOLUME: the runtime knows only host paths.
    init(_ spec: ContainerSpec, rootfs: String) {
        let volumes = Paths.dirname(Paths.dirname(rootfs)) + "/volumes"
        self.init(
            name: spec.name, rootfs: rootfs, hostname: spec.hostname, namespaces: Set(spec.namespaces),
            mounts: spec.mounts.map { Self.resolve($0, volumes: volumes) }, command: spec.command, env: spec.env,
            workdir: spec.workdir, restart: spec.restart, capabilities: spec.capabilities, stopTimeout: spec.stopTimeout)
    }

    /// A volume mount as the bind of its subvolume; other mounts as they are.
    static func resolve(_ mount: Mount, volumes: String) -> Mount {
        guard mount.kind == .volume, let name = mount.source else { return mount }
        return Mount(kind: .bind, source: "\(volumes)/\(name)", target: mount.target, options: mount.options, readonly: mount.readonly)
    }
}
