import Logging
import TuppFacts
import TuppManifest
import TuppNetworking
import TuppPlan
import TuppSystem

/// Published ports: the installation's nftables table read back through libnftables,
/// host sockets and other installations' tables checked for conflicts; judged by
/// `PortsKind`; changed in one transaction (`PublishedPorts`).
struct PortsReconciler: Reconciler {
    var kind: ResourceKind { .ports }

    static func table(installation: String) -> String { PortRules.tableName(installation: installation) }

    func observe(_ observation: inout Observation, _ context: ObserveContext) async {
        let publishing = context.destroying ? Manifest() : context.manifest
        let containers = PortsKind.published(publishing, addresses: observation.desiredContext.addresses,
                                             kept: observation.desiredContext.kept)
        let desired = PortRuleSet.desired(containers)
        let table = Self.table(installation: context.installation)
        // Nothing published and nothing recorded: the table is not read (libnftables is not
        // even loaded). A table left by hand without a record is another tool's business.
        guard !desired.isEmpty || observation.records[PortsKind.address] != nil else { return }
        var facts = PortsFacts(table: nil)
        do {
            facts.table = try PublishedPorts.observe(table: table, bridges: desired.localnetBridges)
            let claims = containers.flatMap { c in c.ports.map { PortClaim(container: c.name, publication: $0) } }
            facts.conflicts = try PublishedPorts.conflicts(for: claims, ownTable: table).map(\.description)
        } catch {
            facts.error = "\(error)"
        }
        observation.facts[PortsFacts.self] = facts
        observation.merge(PortsKind.interpret(desired: desired, facts: facts, record: observation.records[PortsKind.address]))
    }

    func apply(_ change: Plan.ResourceChange, _ context: ApplyContext) async throws {
        let table = Self.table(installation: context.installation)
        switch change.action {
        case .delete:
            try context.save(Record(change.address, status: .deleting, attributes: change.before ?? [:]))
            try PublishedPorts.reconcile(PortRuleSet.desired([]), table: table)
            Checkpoint.pass("port table removed")
            try context.store.remove(change.address)
        case .create, .update, .replace:
            guard let rules = change.spec(PortsSpec.self)?.rules else { return }
            try context.save(Record(change.address, status: .creating, attributes: change.after ?? [:]))
            let changes = try PublishedPorts.reconcile(rules, table: table)
            context.logger.debug("ports: \(changes.isEmpty ? "already as declared" : changes.summary.joined(separator: "; "))")
            Checkpoint.pass("port table changed")
            try context.save(Record(change.address, status: .ready, attributes: change.after ?? [:]))
        case .noop:
            break
        }
    }
}
