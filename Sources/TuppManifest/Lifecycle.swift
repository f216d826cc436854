/// How a container lives as a service: when it is ready (`healthcheck`), what it waits
/// for (`dependsOn`), how it stops (`stopSignal`) and the environment it gets from files
/// (`envFile`). Grouped apart from the process's own settings because they are judged
/// together: start order, readiness and waiting are one concern.
public struct Lifecycle: Sendable, Equatable {
    public var healthcheck: Healthcheck?
    public var onUnhealthy: OnUnhealthy
    /// The signal `stop` sends first; nil: the image's StopSignal, else SIGTERM.
    public var stopSignal: Signal?
    /// The containers this one waits for, by name.
    public var dependsOn: [String: Dependency]
    /// `envFile:` paths (absolute, resolved against the manifest), in order.
    public var envFiles: [String]
    /// The variables those files set, later files winning; `env` overrides them.
    public var fileEnvironment: [String: String]

    public init(healthcheck: Healthcheck? = nil, onUnhealthy: OnUnhealthy = .none, stopSignal: Signal? = nil,
                dependsOn: [String: Dependency] = [:], envFiles: [String] = [], fileEnvironment: [String: String] = [:]) {
        self.healthcheck = healthcheck
        self.onUnhealthy = onUnhealthy
        self.stopSignal = stopSignal
        self.dependsOn = dependsOn
        self.envFiles = envFiles
        self.fileEnvironment = fileEnvironment
    }
}

/// A command run inside the container to tell whether it is ready (Docker's HEALTHCHECK).
public struct Healthcheck: Sendable, Equatable {
    /// argv, run as `exec` would (no shell unless the command names one).
    public var command: [String]
    /// Seconds between checks, and from the start to the first check.
    public var interval: Double
    /// Seconds a check may take; a slower one is killed and counts as a failure.
    public var timeout: Double
    /// Failures in a row that make the container unhealthy.
    public var retries: Int
    /// Seconds after each start in which failures do not count, until the first success.
    public var startPeriod: Double

    public static let defaultInterval = 30.0, defaultTimeout = 30.0, defaultRetries = 3, defaultStartPeriod = 0.0

    public init(command: [String], interval: Double = Healthcheck.defaultInterval, timeout: Double = Healthcheck.defaultTimeout,
                retries: Int = Healthcheck.defaultRetries, startPeriod: Double = Healthcheck.defaultStartPeriod) {
        self.command = command
        self.interval = interval
        self.timeout = timeout
        self.retries = retries
        self.startPeriod = startPeriod
    }
}

/// What becoming unhealthy does.
public enum OnUnhealthy: String, Sendable, CaseIterable {
    /// Nothing: status shows it, `apply --wait` fails on it.
    case none
    /// The supervisor stops the command (stop signal, then SIGKILL) and starts it again.
    case restart
}

/// One `dependsOn` edge (Compose's `depends_on`).
public struct Dependency: Sendable, Equatable {
    public enum Condition: String, Sendable, CaseIterable {
        /// The dependency's command was started.
        case started
        /// Its health check passed (it must have one).
        case healthy
        /// Its command exited with code 0.
        case completed
    }

    public var condition: Condition
    /// Replacing or restarting the dependency restarts this container too.
    public var restart: Bool

    public init(_ condition: Condition = .started, restart: Bool = false) {
        self.condition = condition
        self.restart = restart
    }
}

/// A signal by number, written as SIGINT, INT or 2 in manifests.
public struct Signal: Sendable, Hashable, CustomStringConvertible {
    public var number: Int32

    public init?(number: Int32) {
        guard Signal.names.contains(where: { $0.1 == number }) || (34...64).contains(number) else { return nil }
        self.number = number
    }

    /// "SIGINT", "INT", "sigint", "2", "SIGRTMIN+3". SIGKILL and SIGSTOP cannot be caught,
    /// so they are no stop signal; nil for them and for unknown names.
    public init?(_ text: String) {
        var name = text.uppercased()
        var value = Int32(name)
        if value == nil {
            if name.hasPrefix("SIG") { name.removeFirst(3) }
            if name.hasPrefix("RTMIN+"), let offset = Int32(name.dropFirst(6)) {
                value = 34 + offset
            } else {
                value = Signal.names.first(where: { $0.0 == name })?.1
            }
        }
        guard let value, value != 9, value != 19 else { return nil }
        self.init(number: value)
    }

    public static let term = Signal(number: 15)!

    /// Linux x86_64 and arm64 numbers.
    static let names: [(String, Int32)] = [
        ("HUP", 1), ("INT", 2), ("QUIT", 3), ("ILL", 4), ("TRAP", 5), ("ABRT", 6), ("BUS", 7), ("FPE", 8), ("KILL", 9),
        ("USR1", 10), ("SEGV", 11), ("USR2", 12), ("PIPE", 13), ("ALRM", 14), ("TERM", 15), ("STKFLT", 16), ("CHLD", 17),
        ("CONT", 18), ("STOP", 19), ("TSTP", 20), ("TTIN", 21), ("TTOU", 22), ("URG", 23), ("XCPU", 24), ("XFSZ", 25),
        ("VTALRM", 26), ("PROF", 27), ("WINCH", 28), ("IO", 29), ("PWR", 30), ("SYS", 31),
    ]

    /// "SIGINT", or "SIGRTMIN+3".
    public var description: String {
        if let found = Signal.names.first(where: { $0.1 == number }) { return "SIG\(found.0)" }
        return "SIGRTMIN+\(number - 34)"
    }
}

/// Compose's env_file syntax: `KEY=VALUE` lines; blank lines and lines starting with `#`
/// are skipped; `export ` before a key is allowed; a value in single quotes is taken as
/// it is, one in double quotes understands \n \t \\ \" and may span lines; an unquoted
/// value ends before ` #` and is trimmed. No interpolation: `$` is an ordinary character.
public enum EnvFile {
    public struct Problem: Error, Equatable, Sendable {
        public var line: Int
        public var message: String
    }

    public static func parse(_ text: String) -> Result<[(key: String, value: String)], Problem> {
        var out: [(key: String, value: String)] = []
        // "\r\n" is one Character in Swift: split on either ending.
        let lines = text.split(omittingEmptySubsequences: false, whereSeparator: { $0 == "\n" || $0 == "\r\n" })
        var index = 0
        while index < lines.count {
            let number = index + 1
            var line = lines[index].drop { $0 == " " || $0 == "\t" }
            index += 1
            if line.isEmpty || line.hasPrefix("#") { continue }
            if line.hasPrefix("export ") { line = line.dropFirst(7).drop { $0 == " " } }
            guard let eq = line.firstIndex(of: "=") else {
                return .failure(Problem(line: number, message: "\"\(line)\" needs =VALUE (tupp does not read the caller's environment)"))
            }
            let key = line[..<eq].trimmingSpaces()
            guard !key.isEmpty, key.allSatisfy({ $0.isLetter || $0.isNumber || $0 == "_" || $0 == "." || $0 == "-" }),
                  !key.first!.isNumber else {
                return .failure(Problem(line: number, message: "\"\(key)\" is not a variable name"))
            }
            var rest = line[line.index(after: eq)...].drop { $0 == " " || $0 == "\t" }
            var value = ""
            if let quote = rest.first, quote == "'" || quote == "\"" {
                rest = rest.dropFirst()
                var closed = false
                while !closed {
                    var escaped = false
                    var consumed = rest.startIndex
                    for i in rest.indices {
                        consumed = rest.index(after: i)
                        let c = rest[i]
                        if escaped {
                            switch c {
                            case "n": value.append("\n")
                            case "t": value.append("\t")
                            case "r": value.append("\r")
                            default: value.append(c)
                            }
                            escaped = false
                        } else if c == "\\" && quote == "\"" {
                            escaped = true
                        } else if c == quote {
                            closed = true
                            break
                        } else {
                            value.append(c)
                        }
                    }
                    if closed {
                        let after = rest[consumed...].trimmingSpaces()
                        if !after.isEmpty && !after.hasPrefix("#") {
                            return .failure(Problem(line: number, message: "unexpected \"\(after)\" after the quoted value of \(key)"))
                        }
                    } else {
                        guard index < lines.count else {
                            return .failure(Problem(line: number, message: "the value of \(key) has no closing \(quote)"))
                        }
                        value.append("\n")
                        rest = lines[index][...]
                        index += 1
                    }
                }
            } else {
                var text = rest
                // An unquoted value ends before a comment that follows whitespace.
                if let hash = text.indices.first(where: { text[$0] == "#" && $0 > text.startIndex && " \t".contains(text[text.index(before: $0)]) }) {
                    text = text[..<hash]
                }
                value = String(text.trimmingSpaces())
            }
            if key.utf8.contains(0) || value.utf8.contains(0) {
                return .failure(Problem(line: number, message: "NUL bytes are not allowed"))
            }
            out.append((String(key), value))
        }
        return .success(out)
    }
}

extension Substring {
    func trimmingSpaces() -> Substring {
        var s = self
        while let f = s.first, f == " " || f == "\t" { s.removeFirst() }
        while let l = s.last, l == " " || l == "\t" { s.removeLast() }
        return s
    }
}

/// `dependsOn` as a graph: cycles, in the order a cycle is found.
public enum DependencyGraph {
    /// Each cycle once, as the names along it with the first repeated at the end
    /// ("a → b → a"); edges to names not in `edges` are ignored.
    public static func cycles(_ edges: [String: [String]]) -> [[String]] {
        var state: [String: Int] = [:]  // 1: on the path, 2: done
        var path: [String] = []
        var found: [[String]] = []
        func visit(_ node: String) {
            state[node] = 1
            path.append(node)
            for next in (edges[node] ?? []).sorted() where edges[next] != nil {
                if state[next] == 1, let start = path.firstIndex(of: next) {
                    found.append(Array(path[start...]) + [next])
                } else if state[next] == nil {
                    visit(next)
                }
            }
            path.removeLast()
            state[node] = 2
        }
        for node in edges.keys.sorted() where state[node] == nil { visit(node) }
        return found
    }

    /// Names in an order where every dependency comes before its dependents (names in a
    /// cycle last, in name order).
    public static func order(_ edges: [String: [String]]) -> [String] {
        var done: Set<String> = []
        var out: [String] = []
        var visiting: Set<String> = []
        func visit(_ node: String) {
            guard !done.contains(node), !visiting.contains(node) else { return }
            visiting.insert(node)
            for next in (edges[node] ?? []).sorted() where edges[next] != nil { visit(next) }
            visiting.remove(node)
            done.insert(node)
            out.append(node)
        }
        for node in edges.keys.sorted() { visit(node) }
        return out
    }
}
