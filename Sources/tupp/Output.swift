import Glibc
import Synchronization
import TuppBase
import TuppEngine
import TuppPlan
import TuppRender

/// Whether to paint: only on a terminal, never with NO_COLOR (no-color.org).
func colorEnabled(fd: Int32 = 1) -> Bool {
    isatty(fd) == 1 && getenv("NO_COLOR") == nil
}

/// Writes to stdout without buffering surprises between our lines and the shim's.
func emit(_ text: String) {
    _ = text.withCString { write(1, $0, strlen($0)) }
}

/// One line per resource: `container.web: creating… done (14 ms)`. Changes that run in
/// parallel each get their line when they finish.
final class TextReporter: ApplyReporter, @unchecked Sendable {
    let style: Style
    let tty: Bool
    /// "Apply" or "Destroy", for the closing line.
    let operation: String
    private let lock = Mutex<State>(State())

    struct State {
        /// Changes started and not finished.
        var running = 0
        /// The address whose "…" line is open (printed without its newline).
        var openLine: ResourceAddress?
        /// While an image is pulled on a tty: one line per layer, redrawn in place; the
        /// cursor sits on the line below the block.
        var layerLines: [String] = []
    }

    init(operation: String) {
        style = Style(enabled: colorEnabled())
        tty = isatty(1) == 1
        self.operation = operation
    }

    func planned(_ plan: Plan) {
        emit(PlanText.render(plan, style: style))
        if plan.hasChanges && plan.errors.isEmpty { emit("\n") }
    }

    func start(_ change: Plan.ResourceChange) {
        lock.withLock { state in
            state.running += 1
            if state.running == 1 {
                emit("\(change.address): \(change.verb)…")
                state.openLine = change.address
            } else if state.openLine != nil {
                emit("\n")
                state.openLine = nil
            }
        }
    }

    func progress(_ change: Plan.ResourceChange, _ message: String) {
        lock.withLock { state in
            if message.hasPrefix("warning:") {
                emit((state.openLine != nil ? "\n" : "") + style.yellow("  \(change.address): \(message)") + "\n")
                state.openLine = nil
            } else if message.hasPrefix("waiting for") && !tty {
                // A dependent may wait minutes: a log (the boot unit's journal) says why.
                emit((state.openLine != nil ? "\n" : "") + "  \(change.address): \(message)\n")
                state.openLine = nil
            } else if tty && state.running == 1 && state.layerLines.isEmpty {
                emit("\r\u{1B}[K\(change.address): \(change.verb)… \(message)")
                state.openLine = change.address
            }
        }
    }

    /// On a tty one line per layer with its bytes and rate, redrawn as they move; else a
    /// line when each layer is in place.
    func layer(_ change: Plan.ResourceChange, _ event: LayerProgress) {
        let line = "  " + Self.layerLine(event)
        lock.withLock { state in
            guard tty else {
                if event.phase == .done || event.phase == .present {
                    if state.openLine != nil { emit("\n") }
                    state.openLine = nil
                    emit(line + "\n")
                }
                return
            }
            if state.layerLines.isEmpty {
                if state.openLine != nil { emit("\n") }
                state.openLine = nil
                state.layerLines = (0..<event.count).map { "  layer \($0 + 1)/\(event.count): waiting" }
                emit(state.layerLines.joined(separator: "\n") + "\n")
            }
            guard event.index < state.layerLines.count, state.layerLines[event.index] != line else { return }
            state.layerLines[event.index] = line
            // Up to the layer's line, rewrite it, back down below the block.
            let up = state.layerLines.count - event.index
            emit("\u{1B}[\(up)A\r\u{1B}[K\(line)\u{1B}[\(up)B\r")
        }
    }

    /// "layer 2/3 sha256:0123456789ab  downloading 12.0 MiB / 30.0 MiB (25.1 MiB/s)".
    static func layerLine(_ e: LayerProgress) -> String {
        let digest = e.digest.hasPrefix("sha256:") ? "sha256:" + e.digest.dropFirst(7).prefix(12) : e.digest
        let head = "layer \(e.index + 1)/\(e.count) \(digest)"
        let rate = e.bytesPerSecond > 0 ? " (\(Units.formatSize(UInt64(e.bytesPerSecond)))/s)" : ""
        switch e.phase {
        case .present: return "\(head)  already in the pool"
        case .downloading: return "\(head)  downloading \(Units.formatSize(e.bytes)) / \(Units.formatSize(e.total))\(rate)"
        case .unpacking: return "\(head)  unpacking \(Units.formatSize(e.total))"
        case .done: return "\(head)  done, \(Units.formatSize(e.total))\(rate.isEmpty ? "" : rate.replacing(" (", with: " (unpacked at "))"
        }
    }

    func complete(_ change: Plan.ResourceChange, milliseconds: Double) {
        finish(change, style.green("done") + " (\(formatMilliseconds(milliseconds)))")
    }

    func complete(_ change: Plan.ResourceChange, milliseconds: Double, note: String) {
        finish(change, style.yellow(note))
    }

    func errored(_ change: Plan.ResourceChange, _ error: any Error) {
        finish(change, style.red("failed"))
        printError("\(style.red("Error:")) \(change.address): \(error)")
    }

    private func finish(_ change: Plan.ResourceChange, _ result: String) {
        lock.withLock { state in
            state.running -= 1
            state.layerLines = []
            if state.openLine == change.address && !tty {
                emit(" \(result)\n")
            } else {
                emit("\(tty && state.openLine != nil ? "\r\u{1B}[K" : state.openLine != nil ? "\n" : "")\(change.address): \(change.verb)… \(result)\n")
            }
            state.openLine = nil
        }
    }

    func summary(_ outcome: ApplyOutcome) {
        for u in outcome.unready where !outcome.changed {
            emit(style.red("Not ready:") + " \(u.address): \(u.error)\n")
        }
        guard outcome.changed else { return }   // the plan said "No changes." and its warnings
        for w in outcome.warnings { emit(style.yellow("Warning:") + " \(w)\n") }
        for c in outcome.crashing { emit(style.yellow("Crashing:") + " \(c.address) \(c.note)\n") }
        if outcome.applied.count + outcome.failed.count + outcome.notAttempted.count == 0 {
            for u in outcome.unready { emit(style.red("Not ready:") + " \(u.address): \(u.error)\n") }
            if !outcome.unready.isEmpty { emit("\(operation) waited: \(outcome.unready.count) container\(outcome.unready.count == 1 ? " is" : "s are") not ready.\n") }
            return
        }
        if outcome.failed.isEmpty && outcome.notAttempted.isEmpty && !outcome.unready.isEmpty {
            for u in outcome.unready { emit(style.red("Not ready:") + " \(u.address): \(u.error)\n") }
            emit("\(operation) applied \(outcome.applied.count) change\(outcome.applied.count == 1 ? "" : "s"), but \(outcome.unready.count) container\(outcome.unready.count == 1 ? " is" : "s are") not ready.\n")
            return
        }
        if outcome.succeeded {
            emit(style.bold("\(operation) complete!") + " \(outcome.applied.count) change\(outcome.applied.count == 1 ? "" : "s") in \(formatMilliseconds(outcome.milliseconds)).\n")
        } else {
            emit("\n\(operation) stopped: \(outcome.applied.count) applied, \(outcome.failed.count) failed, \(outcome.notAttempted.count) not attempted.\n")
            for a in outcome.applied { emit("  applied        \(a)\n") }
            for f in outcome.failed { emit("  failed         \(f.address)\n") }
            for n in outcome.notAttempted { emit("  not attempted  \(n)\n") }
            emit("Run \(operation.lowercased()) again to converge.\n")
        }
    }
}

/// JSON lines: planned, start, progress, complete, errored, summary.
final class JSONReporter: ApplyReporter, @unchecked Sendable {
    let version: String
    /// Per layer of the image being pulled: its last phase and when a line was last written.
    private let layers = Mutex<[String: (LayerProgress.Phase, Double)]>([:])

    init(version: String) { self.version = version }

    func line(_ type: String, _ pairs: [(String, JSON.Node)]) {
        emit(JSON.object([("type", .string(type)), ("timestamp", .double(wallClock()))] + pairs).serialized() + "\n")
    }

    func planned(_ plan: Plan) { line("planned", [("plan", PlanJSON.render(plan, tuppVersion: version))]) }

    func start(_ change: Plan.ResourceChange) {
        line("start", [("address", .string(change.address.description)), ("actions", .array(change.action.jsonActions.map { .string($0) }))])
    }

    func progress(_ change: Plan.ResourceChange, _ message: String) {
        line("progress", [("address", .string(change.address.description)), ("message", .string(message))])
    }

    /// A `progress` line with a `layer` object: on each change of phase and at most once a
    /// second while it downloads.
    func layer(_ change: Plan.ResourceChange, _ event: LayerProgress) {
        let key = "\(change.address) \(event.index)"
        let now = wallClock()
        let due = layers.withLock { seen -> Bool in
            if let (phase, at) = seen[key], phase == event.phase, now - at < 1 { return false }
            seen[key] = (event.phase, now)
            return true
        }
        guard due else { return }
        line("progress", [
            ("address", .string(change.address.description)), ("message", .string(TextReporter.layerLine(event))),
            ("layer", JSON.object([
                ("index", .int(Int64(event.index))), ("count", .int(Int64(event.count))), ("digest", .string(event.digest)),
                ("phase", .string(event.phase.rawValue)), ("bytes", .int(Int64(clamping: event.bytes))),
                ("total", .int(Int64(clamping: event.total))), ("bytes_per_second", .double(event.bytesPerSecond.rounded())),
            ])),
        ])
    }

    func complete(_ change: Plan.ResourceChange, milliseconds: Double) {
        line("complete", [("address", .string(change.address.description)), ("actions", .array(change.action.jsonActions.map { .string($0) })),
                          ("elapsed_ms", .double((milliseconds * 10).rounded() / 10))])
    }

    func complete(_ change: Plan.ResourceChange, milliseconds: Double, note: String) {
        line("complete", [("address", .string(change.address.description)), ("actions", .array(change.action.jsonActions.map { .string($0) })),
                          ("elapsed_ms", .double((milliseconds * 10).rounded() / 10)), ("note", .string(note))])
    }

    func errored(_ change: Plan.ResourceChange, _ error: any Error) {
        line("errored", [("address", .string(change.address.description)), ("error", .string("\(error)"))])
    }

    func summary(_ outcome: ApplyOutcome) {
        line("summary", [
            ("succeeded", .bool(outcome.succeeded)),
            ("applied", .array(outcome.applied.map { .string($0.description) })),
            ("failed", .array(outcome.failed.map { JSON.object([("address", .string($0.address.description)), ("error", .string($0.error))]) })),
            ("not_attempted", .array(outcome.notAttempted.map { .string($0.description) })),
            ("warnings", .array(outcome.warnings.map { .string($0) })),
            ("crashing", .array(outcome.crashing.map { JSON.object([("address", .string($0.address.description)), ("note", .string($0.note))]) })),
            ("unready", .array(outcome.unready.map { JSON.object([("address", .string($0.address.description)), ("error", .string($0.error))]) })),
            ("elapsed_ms", .double((outcome.milliseconds * 10).rounded() / 10)),
        ])
    }
}

func wallClock() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec / 1_000_000) / 1000
}

func formatMilliseconds(_ ms: Double) -> String {
    ms < 10 ? "\((ms * 10).rounded() / 10) ms" : ms < 10_000 ? "\(Int(ms.rounded())) ms" : "\((ms / 100).rounded() / 10) s"
}
