import Glibc
import Logging
import Synchronization
import Testing
@testable import TuppEngine
import TuppFacts
import TuppManifest
import TuppPlan
import TuppRuntime
import TuppSystem
import TuppTestSupport

/// The host's links as a recording fake: every call is logged together with the record the
/// state directory held at that moment, so a test can see that intent was written before
/// each side effect. No root, no kernel.
final class RecordingLinks: HostLinks, @unchecked Sendable {
    struct Call: Equatable {
        var operation: String
        /// The status of the network's record on disk when the call was made.
        var recorded: Record.Status?
    }

    let store: StateStore
    let address: ResourceAddress
    private let state = Mutex<(calls: [Call], links: [String: LinkInfo])>(([], [:]))
    /// A call that fails (after being logged), to see what an interrupted change leaves.
    var failing: String?

    init(store: StateStore, address: ResourceAddress, links: [LinkInfo] = []) {
        self.store = store
        self.address = address
        state.withLock { $0.links = Dictionary(uniqueKeysWithValues: links.map { ($0.name, $0) }) }
    }

    var calls: [Call] { state.withLock { $0.calls } }

    private func log(_ operation: String) throws(SystemError) {
        let recorded = (try? store.load())?[address]?.status
        state.withLock { $0.calls.append(Call(operation: operation, recorded: recorded)) }
        if operation.hasPrefix(failing ?? "\u{0}") { throw SystemError("fake \(operation)", "test", errno: EIO) }
    }

    func snapshot() throws(SystemError) -> NetworkSnapshot { NetworkSnapshot(links: state.withLock { Array($0.links.values) }) }
    func link(named name: String) throws(SystemError) -> LinkInfo? { state.withLock { $0.links[name] } }

    func createBridge(name: String, address: IPv4Interface, mtu: Int?, alias: String, mac: MACAddress?) throws(SystemError) {
        try log("create \(name) \(address)")
        state.withLock { $0.links[name] = LinkInfo(index: 10, name: name, kind: "bridge", isUp: true, alias: alias) }
    }

    func updateBridge(name: String, address: IPv4Interface, mtu: Int?) throws(SystemError) -> Bool {
        try log("update \(name) \(address)")
        return true
    }

    func setAlias(name: String, alias: String) throws(SystemError) { try log("alias \(name)") }
    func setUp(name: String) throws(SystemError) { try log("up \(name)") }

    func deleteLink(name: String) throws(SystemError) -> Bool {
        try log("delete \(name)")
        return state.withLock { $0.links.removeValue(forKey: name) != nil }
    }
}

/// Masquerading as a recording fake.
final class RecordingMasquerading: Masquerading, @unchecked Sendable {
    private let subnetsByTable = Mutex<[String: [IPv4Network]]>([:])

    func subnets(table: String) throws(SystemError) -> [IPv4Network]? { subnetsByTable.withLock { $0[table] } }
    func enable(_ subnet: IPv4Network, table: String) throws(SystemError) {
        subnetsByTable.withLock { $0[table, default: []].append(subnet) }
    }
    func disable(_ subnet: IPv4Network, table: String) throws(SystemError) {
        subnetsByTable.withLock { tables in
            tables[table]?.removeAll { $0 == subnet }
            if tables[table]?.isEmpty == true { tables[table] = nil }
        }
    }
    var tables: [String: [IPv4Network]] { subnetsByTable.withLock { $0 } }
}

@Suite struct NetworkReconcilerTests {
    let network = Network(name: "br0", bridge: "tuppx0", subnet: IPv4Network("10.77.0.0/24")!, nat: true)
    let address = ResourceAddress(.network, "br0")

    func context(_ store: StateStore, records: [ResourceAddress: Record] = [:], observed: ObservedResource? = nil,
                 nat: [IPv4Network]? = nil) -> ApplyContext {
        var observation = Observation()
        observation.records = records
        if let observed { observation.state.resources[observed.address] = observed }
        observation.facts[NetworkFacts.self] = NetworkFacts(host: NetworkSnapshot(), natSubnets: nat)
        return ApplyContext(store: store, runtime: Runtime(shimPath: "/nonexistent"), installation: "inst01",
                            logger: Logger(label: "test"), options: PlanOptions(), observation: observation, progress: { _ in })
    }

    @Test func creationRecordsIntentBeforeTheBridgeAndReadyAfter() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = StateStore(directory: dir.path)
        let links = RecordingLinks(store: store, address: address)
        let nat = RecordingMasquerading()
        let reconciler = NetworkReconciler(links: { links }, masquerading: nat)
        let change = Plan.ResourceChange(address: address, action: .create, before: nil, after: NetworkKind.attributes(network),
                                         spec: NetworkSpec(network))
        try await reconciler.apply(change, context(store))
        #expect(links.calls == [RecordingLinks.Call(operation: "create tuppx0 10.77.0.1/24", recorded: .creating)])
        let record = try #require(try store.load()[address])
        #expect(record.status == .ready && record.bridgeName == "tuppx0" && !record.isExternal)
        #expect(record.attributes == NetworkKind.attributes(network))
        #expect(nat.tables[NetworkReconciler.natTable(installation: "inst01")] == [network.subnet])
    }

    @Test func aFailedCreationLeavesTheIntentForTheNextPlan() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = StateStore(directory: dir.path)
        let links = RecordingLinks(store: store, address: address)
        links.failing = "create"
        let reconciler = NetworkReconciler(links: { links }, masquerading: RecordingMasquerading())
        let change = Plan.ResourceChange(address: address, action: .create, before: nil, after: NetworkKind.attributes(network),
                                         spec: NetworkSpec(network))
        await #expect(throws: SystemError.self) { try await reconciler.apply(change, context(store)) }
        #expect(try store.load()[address]?.status == .creating)
    }

    @Test func removalRecordsIntentBeforeDeletingAndRemovesTheTableWithItsLastRule() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = StateStore(directory: dir.path)
        var record = Record(address, status: .ready, attributes: NetworkKind.attributes(network))
        record.bridgeName = "tuppx0"
        try store.save(record)
        let links = RecordingLinks(store: store, address: address, links: [LinkInfo(index: 10, name: "tuppx0", kind: "bridge")])
        let nat = RecordingMasquerading()
        let table = NetworkReconciler.natTable(installation: "inst01")
        try nat.enable(network.subnet, table: table)
        let reconciler = NetworkReconciler(links: { links }, masquerading: nat)
        let change = Plan.ResourceChange(address: address, action: .delete, before: record.attributes, after: nil)
        try await reconciler.apply(change, context(store, records: [address: record], observed: ObservedResource(address),
                                                   nat: [network.subnet]))
        #expect(links.calls == [RecordingLinks.Call(operation: "delete tuppx0", recorded: .deleting)])
        #expect(try store.load()[address] == nil)
        #expect(nat.tables[table] == nil)
    }

    @Test func aForeignBridgeIsRecordedAsExternalAndNeverTouched() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let store = StateStore(directory: dir.path)
        let links = RecordingLinks(store: store, address: address, links: [LinkInfo(index: 3, name: "tuppx0", kind: "bridge")])
        let reconciler = NetworkReconciler(links: { links }, masquerading: RecordingMasquerading())
        let change = Plan.ResourceChange(address: address, action: .create, before: nil, after: NetworkKind.attributes(network),
                                         spec: NetworkSpec(network))
        try await reconciler.apply(change, context(store, observed: ObservedResource(address, external: true)))
        #expect(links.calls.isEmpty)
        #expect(try store.load()[address]?.isExternal == true)

        // Removing it forgets the record and leaves the bridge.
        let record = try #require(try store.load()[address])
        let removal = Plan.ResourceChange(address: address, action: .delete, before: record.attributes, after: nil)
        try await reconciler.apply(removal, context(store, records: [address: record], observed: ObservedResource(address, external: true)))
        #expect(links.calls.isEmpty)
        #expect(try store.load()[address] == nil)
    }
}
