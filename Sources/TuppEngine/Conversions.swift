import TuppManifest
import TuppNetworking
import TuppRuntime
import TuppStorage

// The manifest model is the user's vocabulary; where a reconciler needs its own, these map
// one to the other in a single place. (Storage takes the manifest's `Storage` as it is; the
// runtime shares its namespaces, mounts, restart policies and capabilities.)

extension ImageSource {
    init(_ source: Image.Source) {
        switch source {
        case .busybox(let path): self = .busybox(path: path)
        case .tar(let path): self = .tar(path: path)
        case .oci(let layout, let tag): self = .oci(layout: layout, tag: tag)
        case .directory(let path): self = .directory(path: path)
        }
    }
}

extension ContainerConfig {
    /// The runtime's view of a declared container, rooted at its snapshot.
    init(_ c: Container, rootfs: String) {
        var env: [String: String] = [:]
        for (key, value) in c.env { env[key] = value }
        self.init(
            name: c.name, rootfs: rootfs, hostname: c.effectiveHostname, namespaces: Set(c.namespaces),
            mounts: c.mounts,
            command: c.command, env: env, workdir: c.workdir,
            restart: c.restart,
            capabilities: c.effectiveCapabilities,
            stopTimeout: c.stopTimeout)
    }
}
