import TuppFacts
import TuppManifest
import TuppSystem

/// DIR/state as tupp-shim writes it (KEY=VALUE lines; see Sources/tupp-shim/supervise.c).
/// TuppRuntime writes it only when the shim is gone and cannot (stop after a crash).
struct StateRecord: Equatable, Sendable {
    var shimPID: Int32 = 0
    var shimStartTime: UInt64 = 0
    var initPID: Int32 = 0
    var initStartTime: UInt64 = 0
    var state = ""
    var restarts = 0
    var startedAt: Double?
    var exit: ExitRecord?
    var error: String?
    var namespaces: [Namespace: UInt64] = [:]
    var oomKills: Int?
    /// "starting", "healthy", "unhealthy"; nil without a health check.
    var health: String?
    var healthFailures = 0
    /// How long the run that ended lasted.
    var ranMilliseconds: Double?

    static func parse(_ text: String) -> StateRecord {
        var record = StateRecord()
        var code: Int32?, signal: Int32?, exitAt: Double?, oom = false
        for line in text.split(separator: "\n") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            let key = line[..<eq], value = String(line[line.index(after: eq)...])
            switch key {
            case "shim-pid": record.shimPID = Int32(value) ?? 0
            case "shim-start": record.shimStartTime = UInt64(value) ?? 0
            case "init-pid": record.initPID = Int32(value) ?? 0
            case "init-start": record.initStartTime = UInt64(value) ?? 0
            case "state": record.state = value
            case "restarts": record.restarts = Int(value) ?? 0
            case "started-at": record.startedAt = Double(value).flatMap { $0 > 0 ? $0 : nil }
            case "exit-code": code = Int32(value)
            case "exit-signal": signal = Int32(value)
            case "exit-at": exitAt = Double(value)
            case "exit-oom": oom = value == "1"
            case "oom-kills": record.oomKills = Int(value)
            case "error": record.error = value
            case "health": record.health = value
            case "health-failures": record.healthFailures = Int(value) ?? 0
            case "ran-ms": record.ranMilliseconds = Double(value)
            default:
                if key.hasPrefix("ns-"), let namespace = Namespace.allCases.first(where: { "ns-\($0.procName)" == key }) {
                    record.namespaces[namespace] = UInt64(value)
                }
            }
        }
        if let signal {
            record.exit = ExitRecord(status: .signal(signal), at: exitAt ?? 0, oomKilled: oom)
        } else if let code {
            record.exit = ExitRecord(status: .code(code), at: exitAt ?? 0, oomKilled: oom)
        }
        return record
    }

    func render() -> String {
        var lines = ["version=1", "shim-pid=\(shimPID)", "shim-start=\(shimStartTime)", "init-pid=\(initPID)",
                     "init-start=\(initStartTime)", "state=\(state)", "restarts=\(restarts)",
                     "started-at=\(startedAt ?? 0)"]
        if let exit {
            switch exit.status {
            case .code(let code): lines.append("exit-code=\(code)")
            case .signal(let signal): lines.append("exit-signal=\(signal)")
            }
            lines.append("exit-at=\(exit.at)")
            if exit.oomKilled { lines.append("exit-oom=1") }
        }
        if let oomKills { lines.append("oom-kills=\(oomKills)") }
        if let ranMilliseconds { lines.append("ran-ms=\(Int(ranMilliseconds))") }
        if let error { lines.append("error=\(error)") }
        return lines.joined(separator: "\n") + "\n"
    }

    static func read(directory: String) throws(SystemError) -> StateRecord? {
        try Files.readText("\(directory)/state", limit: 1 << 16).map(parse)
    }
}
