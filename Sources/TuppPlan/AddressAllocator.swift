import TuppBase
import TuppManifest

/// Addresses for containers that do not declare one: deterministic and stable.
///
/// A container keeps the address it was given while it exists (`recorded`). A new one
/// starts at a slot derived from a hash of its name and takes the first free address
/// from there, so the same manifest yields the same addresses after destroy + apply,
/// whatever order containers were added in.
public enum AddressAllocator {
    public struct Exhausted: Error, Equatable, Sendable {
        public var network: String
        public var container: String
    }

    public static func allocate(_ manifest: Manifest, recorded: [String: IPv4Interface]) -> Result<[String: IPv4Interface], Exhausted> {
        var result: [String: IPv4Interface] = [:]
        var taken: [String: Set<UInt32>] = [:]   // by network
        var pending: [(container: String, network: Network)] = []
        for name in manifest.containers.keys.sorted() {
            guard let attachment = manifest.containers[name]!.network,
                  let network = manifest.networks[attachment.attach] else { continue }
            if let explicit = attachment.address {
                result[name] = explicit
                taken[network.name, default: reserved(network)].insert(explicit.address.value)
            } else {
                pending.append((name, network))
            }
        }
        // Recorded addresses first, so existing containers never move.
        var fresh: [(container: String, network: Network)] = []
        for item in pending {
            var set = taken[item.network.name, default: reserved(item.network)]
            if let old = recorded[item.container], old.prefixLength == item.network.subnet.prefixLength,
               item.network.subnet.contains(old.address), !set.contains(old.address.value) {
                result[item.container] = old
                set.insert(old.address.value)
            } else {
                fresh.append(item)
            }
            taken[item.network.name] = set
        }
        for item in fresh {
            var set = taken[item.network.name, default: reserved(item.network)]
            let subnet = item.network.subnet
            let hosts = subnet.size - 2
            guard hosts > 0 else { return .failure(Exhausted(network: item.network.name, container: item.container)) }
            let start = StableHash.fnv1a(item.container) % hosts
            var found: IPv4Address?
            var offset: UInt64 = 0
            while offset < hosts {
                let candidate = IPv4Address(subnet.network.value &+ 1 &+ UInt32((start + offset) % hosts))
                if !set.contains(candidate.value) { found = candidate; break }
                offset += 1
            }
            guard let address = found else { return .failure(Exhausted(network: item.network.name, container: item.container)) }
            set.insert(address.value)
            taken[item.network.name] = set
            result[item.container] = IPv4Interface(address: address, prefixLength: subnet.prefixLength)
        }
        return .success(result)
    }

    static func reserved(_ network: Network) -> Set<UInt32> {
        [network.subnet.network.value, network.subnet.broadcast.value, network.gateway.value]
    }
}
