import TuppBase
import TuppManifest

extension DocumentDecoder {
    /// A container's `healthcheck`, `onUnhealthy`, `stopSignal`, `dependsOn` and `envFile`.
    /// Environment files are read here, relative to the manifest, so a changed file shows
    /// in the plan as changed variables.
    mutating func decodeLifecycle(_ fields: inout Fields, what: String, path: String, manifest: inout Manifest) -> Lifecycle {
        var lifecycle = Lifecycle()
        if let n = fields.take("healthcheck") {
            manifest.sources["\(path).healthcheck"] = location(n)
            lifecycle.healthcheck = decodeHealthcheck(n, what: "\(what) healthcheck", path: "\(path).healthcheck", manifest: &manifest)
        }
        if let n = fields.take("onUnhealthy"), let text = string(n, "\(what) onUnhealthy") {
            manifest.sources["\(path).onUnhealthy"] = location(n)
            if let value = OnUnhealthy(rawValue: text) {
                lifecycle.onUnhealthy = value
            } else {
                error(n, "onUnhealthy must be none or restart (got \"\(text)\")\(suggestion(text, OnUnhealthy.allCases.map(\.rawValue)))")
            }
        }
        if let n = fields.take("stopSignal") {
            manifest.sources["\(path).stopSignal"] = location(n)
            if let text = string(n, "\(what) stopSignal", allowNumbers: true) {
                if let signal = Signal(text) {
                    lifecycle.stopSignal = signal
                } else {
                    error(n, "stopSignal \"\(text)\" is not a signal a process can catch (e.g. SIGTERM, SIGINT, SIGQUIT, SIGUSR1, 15)")
                }
            }
        }
        if let n = fields.take("dependsOn") {
            manifest.sources["\(path).dependsOn"] = location(n)
            lifecycle.dependsOn = decodeDependencies(n, what: "\(what) dependsOn", path: "\(path).dependsOn", manifest: &manifest)
        }
        if let n = fields.take("envFile") {
            manifest.sources["\(path).envFile"] = location(n)
            let items: [Node]
            if case .sequence(let list) = n.value { items = list } else { items = [n] }
            for (i, item) in items.enumerated() {
                guard let text = string(item, "\(what) envFile entry"), !text.isEmpty else { continue }
                let file = resolvePath(text)
                manifest.sources["\(path).envFile[\(i)]"] = location(item)
                lifecycle.envFiles.append(file)
                switch ManifestLoader.readFile(file, limit: 1 << 20) {
                case .failure(let problem):
                    error(item, "envFile \(file): \(problem.message.replacingPrefix("cannot read manifest: "))")
                case .success(let bytes):
                    switch EnvFile.parse(String(decoding: bytes, as: UTF8.self)) {
                    case .failure(let problem): error(item, "envFile \(file):\(problem.line): \(problem.message)")
                    case .success(let pairs): for (key, value) in pairs { lifecycle.fileEnvironment[key] = value }
                    }
                }
            }
        }
        return lifecycle
    }

    mutating func decodeHealthcheck(_ node: Node, what: String, path: String, manifest: inout Manifest) -> Healthcheck? {
        guard var fields = mapping(node, what) else { return nil }
        var command: [String] = []
        if let n = fields.take("command") {
            if case .scalar = n.value, let text = string(n, "\(what) command") {
                // Docker's CMD-SHELL form: a string runs through /bin/sh -c.
                command = ["/bin/sh", "-c", text]
            } else if let items = list(n, "\(what) command") {
                command = items.compactMap { string($0, "health check argument", allowNumbers: true) }
                if items.isEmpty { error(n, "\(what) command is empty") }
            }
            if command.contains(where: { $0.utf8.contains(0) }) { error(n, "health check arguments cannot contain NUL bytes") }
        } else {
            error(node, "\(what) needs \"command\" (e.g. [\"pg_isready\"], or a string run by /bin/sh -c)")
        }
        var check = Healthcheck(command: command)
        for key in ["interval", "timeout", "startPeriod"] {
            guard let n = fields.take(key), let seconds = duration(n) else { continue }
            manifest.sources["\(path).\(key)"] = location(n)
            if key != "startPeriod" && seconds < 0.01 {
                error(n, "\(what) \(key) must be at least 10ms")
            } else if seconds > 86400 {
                error(n, "\(what) \(key) must be at most 24h")
            }
            switch key {
            case "interval": check.interval = seconds
            case "timeout": check.timeout = seconds
            default: check.startPeriod = seconds
            }
        }
        if let n = fields.take("retries"), let value = integer(n, "\(what) retries") {
            manifest.sources["\(path).retries"] = location(n)
            if (1...1000).contains(value) { check.retries = Int(value) } else { error(n, "\(what) retries must be 1…1000") }
        }
        finish(&fields, in: what)
        return command.isEmpty ? nil : check
    }

    /// `{ db: healthy }`, `{ db: { condition: healthy, restart: true } }` or `[db, cache]`.
    mutating func decodeDependencies(_ node: Node, what: String, path: String, manifest: inout Manifest) -> [String: Dependency] {
        var out: [String: Dependency] = [:]
        let conditions = Dependency.Condition.allCases.map(\.rawValue)
        if case .sequence(let items) = node.value {
            for item in items {
                guard let name = string(item, "\(what) entry") else { continue }
                manifest.sources["\(path).\(name)"] = location(item)
                if out[name] != nil { error(item, "\(what) names \(name) twice") }
                out[name] = Dependency(.started)
            }
            return out
        }
        guard var entries = mapping(node, what, allowNull: true) else { return out }
        for (k, v) in entries.all() {
            let name = keyText(k)
            manifest.sources["\(path).\(name)"] = location(k)
            var dependency = Dependency()
            if case .mapping = v.value {
                guard var f = mapping(v, "\(what).\(name)") else { continue }
                if let c = f.take("condition"), let text = string(c, "condition") {
                    if let condition = Dependency.Condition(rawValue: text) { dependency.condition = condition } else {
                        error(c, "condition must be one of \(conditions.joined(separator: ", ")) (got \"\(text)\")\(suggestion(text, conditions))")
                    }
                }
                if let r = f.take("restart"), let flag = bool(r, "\(what).\(name) restart") { dependency.restart = flag }
                finish(&f, in: "\(what).\(name)")
            } else if let text = string(v, "\(what).\(name)") {
                if let condition = Dependency.Condition(rawValue: text) { dependency.condition = condition } else {
                    error(v, "\(what).\(name) must be one of \(conditions.joined(separator: ", ")) (got \"\(text)\")\(suggestion(text, conditions))")
                }
            }
            out[name] = dependency
        }
        return out
    }
}

extension Validator {
    /// `dependsOn`: every name declared, no container waiting for itself, no cycles, and
    /// `healthy` only on a container that can become healthy.
    mutating func checkDependencies() {
        var edges: [String: [String]] = [:]
        for name in manifest.containers.keys.sorted() {
            let c = manifest.containers[name]!
            edges[name] = []
            for (target, dependency) in c.lifecycle.dependsOn.sorted(by: { $0.key < $1.key }) {
                let at = "containers.\(name).dependsOn.\(target)"
                guard let other = manifest.containers[target] else {
                    if manifest.sources["containers.\(target)"] == nil {
                        let known = manifest.containers.keys.filter { $0 != name }.sorted()
                        let hint = Suggest.closest(to: target, in: known).map { "; did you mean \"\($0)\"?" }
                            ?? (known.isEmpty ? "; no other containers are declared" : "; declared: \(known.joined(separator: ", "))")
                        error(at, "container \"\(name)\" depends on \"\(target)\", which is not declared\(hint)")
                    }
                    continue
                }
                if target == name {
                    error(at, "container \"\(name)\" cannot depend on itself")
                    continue
                }
                edges[name]!.append(target)
                // An image with a configuration (oci:, a registry) may bring a health check of its own.
                let configured: Bool
                switch manifest.images[other.image]?.source {
                case .busybox?, .tar?, .directory?: configured = false
                default: configured = true
                }
                if dependency.condition == .healthy && other.lifecycle.healthcheck == nil && !configured {
                    error(at, "container \"\(name)\" waits for \"\(target)\" to be healthy, but \"\(target)\" has no healthcheck")
                }
            }
        }
        for cycle in DependencyGraph.cycles(edges) {
            error("containers.\(cycle[0]).dependsOn.\(cycle[1])", "dependsOn forms a cycle: \(cycle.joined(separator: " → ")); no container of it could start")
        }
    }
}
