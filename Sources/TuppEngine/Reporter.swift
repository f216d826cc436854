import TuppBase
import TuppPlan

/// Receives apply progress: the CLI prints lines for people or JSON lines for machines.
public protocol ApplyReporter: Sendable {
    /// The plan apply is about to carry out (or refuses, when it has errors).
    func planned(_ plan: Plan)
    func start(_ change: Plan.ResourceChange)
    func progress(_ change: Plan.ResourceChange, _ message: String)
    /// One layer's progress while `change` pulls or imports an image from layers.
    func layer(_ change: Plan.ResourceChange, _ event: LayerProgress)
    func complete(_ change: Plan.ResourceChange, milliseconds: Double)
    /// Applied, but the command it started did not stay up, or finished, within the
    /// settle time: `note` says how ("exited with code 1 after 40 ms (restarting, attempt 3)").
    func complete(_ change: Plan.ResourceChange, milliseconds: Double, note: String)
    func errored(_ change: Plan.ResourceChange, _ error: any Error)
    func summary(_ outcome: ApplyOutcome)
}

extension ApplyReporter {
    public func complete(_ change: Plan.ResourceChange, milliseconds: Double, note: String) {
        complete(change, milliseconds: milliseconds)
    }

    public func layer(_ change: Plan.ResourceChange, _ event: LayerProgress) {}
}

/// How an apply ended, resource by resource.
public struct ApplyOutcome: Sendable {
    public var applied: [ResourceAddress] = []
    public var failed: [(address: ResourceAddress, error: String)] = []
    public var notAttempted: [ResourceAddress] = []
    /// Started commands that exited or were restarted within the settle time.
    public var crashing: [(address: ResourceAddress, note: String)] = []
    /// `--wait`: containers that were not ready (running, healthy) in time, with why.
    public var unready: [(address: ResourceAddress, error: String)] = []
    public var warnings: [String] = []
    public var milliseconds: Double = 0
    /// False when the plan had nothing to do.
    public var changed = false

    public init() {}

    public var succeeded: Bool { failed.isEmpty && notAttempted.isEmpty && unready.isEmpty }
}

extension Plan.ResourceChange {
    /// "creating", "updating", "replacing", "destroying".
    public var verb: String {
        switch action {
        case .create: "creating"
        case .update: effect == .restart ? "restarting" : "updating"
        case .replace: "replacing"
        case .delete: "destroying"
        case .noop: "checking"
        }
    }
}
