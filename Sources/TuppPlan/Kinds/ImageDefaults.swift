import TuppFacts
import TuppManifest

/// What an image gives the containers built from it when they do not say otherwise.
public enum ImageDefaults: Sendable, Equatable {
    /// No config (busybox, tar, directory): the manifest says everything.
    case none
    /// The image config (OCI layouts and registry images).
    case config(ImageConfig)
    /// The image has a config nobody could read before it is pulled (the registry was not
    /// asked, or did not answer): apply takes it from the pulled image.
    case unknown
}

/// What the container runs, after the image config's defaults (Docker's rules).
public struct RunSettings: Sendable, Equatable {
    /// Entrypoint + command; empty when neither the manifest nor the image gives one.
    public var command: [String]
    public var env: [String: String]
    public var workdir: String
    /// The image config's User ("NAME", "UID:GID"): the container's `user` when it has none.
    public var user: String?
    /// The image config's StopSignal: the container's `stopSignal` when it has none.
    public var stopSignal: String?
    /// The image config's Healthcheck: the container's `healthcheck` when it has none.
    public var healthcheck: Healthcheck?

    /// The manifest's `entrypoint` replaces the image's Entrypoint — and, as in Docker,
    /// drops its Cmd unless `command` is given too; `command` replaces Cmd. The manifest's
    /// env files' variables and then its `env` are laid over the image's Env (Compose's
    /// order); `workdir` replaces WorkingDir (default /).
    public init(_ c: Container, config: ImageConfig?) {
        let entrypoint = c.entrypoint ?? config?.entrypoint ?? []
        let cmd = c.command ?? (c.entrypoint != nil ? [] : config?.cmd ?? [])
        command = entrypoint + cmd
        var env: [String: String] = [:]
        for entry in config?.env ?? [] {
            // The image-spec writes VARIABLE=VALUE; an entry without '=' names nothing.
            guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else { continue }
            env[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
        }
        for (key, value) in c.lifecycle.fileEnvironment { env[key] = value }
        for (key, value) in c.env { env[key] = value }
        self.env = env
        workdir = c.workdir ?? config?.workingDir ?? "/"
        user = config?.user
        stopSignal = config?.stopSignal
        healthcheck = config?.healthcheck.flatMap(Self.healthcheck)
    }

    /// Docker's HEALTHCHECK as tupp runs checks: ["CMD", args…] runs args, ["CMD-SHELL",
    /// command] runs it with /bin/sh -c, ["NONE"] (or nothing) is none; a duration or
    /// retry count of 0 means the default.
    static func healthcheck(_ h: ImageConfig.Healthcheck) -> Healthcheck? {
        let command: [String]
        switch h.test.first {
        case "CMD": command = Array(h.test.dropFirst())
        case "CMD-SHELL": command = ["/bin/sh", "-c", h.test.dropFirst().joined(separator: " ")]
        default: return nil
        }
        guard !command.isEmpty else { return nil }
        func seconds(_ nanoseconds: Int64, _ fallback: Double) -> Double { nanoseconds > 0 ? Double(nanoseconds) / 1e9 : fallback }
        return Healthcheck(command: command, interval: seconds(h.intervalNanoseconds, Healthcheck.defaultInterval),
                           timeout: seconds(h.timeoutNanoseconds, Healthcheck.defaultTimeout),
                           retries: h.retries > 0 ? h.retries : Healthcheck.defaultRetries,
                           startPeriod: seconds(h.startPeriodNanoseconds, Healthcheck.defaultStartPeriod))
    }
}
