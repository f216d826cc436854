import Glibc
import Testing
import TuppBase
import TuppPlan
import TuppSystem
import TuppTestSupport

/// The examples of a page in docs/, each a fenced block right after an
/// `<!-- example: NAME -->` line: the tests run what the page shows.
struct DocExamples {
    let page: String
    let blocks: [String: String]

    init(_ page: String) throws {
        self.page = page
        let path = "\(Built.repository)docs/\(page)"
        guard let text = try Files.readText(path) else { throw SystemError.failure("read", path, "missing") }
        var blocks: [String: String] = [:]
        var name: String?
        var body: [Substring]?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if var open = body {
                if line.hasPrefix("```") {
                    blocks[name!] = open.joined(separator: "\n") + "\n"
                    body = nil
                    name = nil
                } else {
                    open.append(line)
                    body = open
                }
            } else if line.hasPrefix("<!-- example: "), line.hasSuffix(" -->") {
                name = String(line.dropFirst("<!-- example: ".count).dropLast(" -->".count))
            } else if name != nil, line.hasPrefix("```") {
                body = []
            }
        }
        self.blocks = blocks
    }

    func callAsFunction(_ name: String) throws -> String {
        guard let block = blocks[name] else {
            throw SystemError.failure("find example", "\(page): \(name)", "no fenced block after <!-- example: \(name) -->")
        }
        return block
    }

    /// `block` with each `replacements` key replaced; a key missing from the block is an
    /// error, so an edit of the page cannot silently leave the test running something else.
    static func substitute(_ block: String, _ replacements: KeyValuePairs<String, String>) throws -> String {
        var text = block
        for (from, to) in replacements {
            guard text.contains(from) else { throw SystemError.failure("substitute", from, "not in the example:\n\(block)") }
            text = text.replacing(from, with: to)
        }
        return text
    }
}

/// Runs `arguments` with `directory` as its working directory.
@discardableResult
func run(in directory: String, _ arguments: [String], environment: [String] = []) throws -> Output {
    try Spawn.run(["/bin/sh", "-c", "cd \"$1\" && shift && exec \"$@\"", "sh", directory] + arguments, environment: environment)
}

/// A shell snippet from the docs, run with `sh -e` in `directory`.
@discardableResult
func shell(in directory: String, _ script: String, environment: [String] = []) throws -> Output {
    try run(in: directory, ["/bin/sh", "-ec", script], environment: environment)
}

func tool(_ path: String) -> Host.Feature { .command(path) }

/// What ansible-playbook printed, read the way a person reads it: the result line of each
/// task on each host, and the recap.
struct PlaybookRun: CustomStringConvertible {
    let output: Output

    var status: Int32 { output.status }
    var description: String { output.description }

    /// "changed", "ok", "fatal", "skipping" for `task` on `host` (nil if it did not run there).
    func result(_ task: String, _ host: String) -> String? {
        var current: String?
        var found: String?
        for line in output.stdout.split(separator: "\n") {
            if line.hasPrefix("TASK ["), let end = line.firstIndex(of: "]") {
                current = String(line[line.index(line.startIndex, offsetBy: 6)..<end])
            } else if current == task {
                for status in ["ok", "changed", "fatal", "failed", "skipping"] where line.hasPrefix("\(status): [\(host)]") {
                    found = status
                }
            }
        }
        return found
    }

    /// The recap's `changed=N` for `host`.
    func changedCount(_ host: String) -> Int? {
        for line in output.stdout.split(separator: "\n") where line.hasPrefix(host + " ") {
            let fields = line.split(separator: " ")
            if let field = fields.first(where: { $0.hasPrefix("changed=") }) { return Int(field.dropFirst(8)) }
        }
        return nil
    }
}

/// ansible-playbook and ansible-galaxy with everything they write kept in `directory`, the
/// built tupp first in PATH, no colors.
struct Ansible {
    let directory: String

    var environment: [String] {
        [
            "ANSIBLE_COLLECTIONS_PATH=\(directory)/collections",
            "ANSIBLE_LOCAL_TEMP=\(directory)/tmp-local",
            "ANSIBLE_REMOTE_TEMP=\(directory)/tmp-remote",
            "ANSIBLE_NOCOLOR=1",
            "ANSIBLE_RETRY_FILES_ENABLED=0",
            "ANSIBLE_LOCALHOST_WARNING=0",
            "HOME=\(directory)/home",
            "PATH=\(Built.directory):/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        ]
    }

    /// A shell command from the docs (`ansible-playbook -i inventory.yml rollout.yml …`), run in `directory`.
    func command(_ script: String) throws -> PlaybookRun {
        PlaybookRun(output: try shell(in: directory, script, environment: environment))
    }
}

/// A container's init as /proc shows it (pid and start time), not as tupp reports it.
func containerPID(_ installation: Installation, _ name: String) throws -> ProcessIdentity? {
    installation.processes(of: name)?.initProcess
}

/// The hostname inside the container's UTS namespace, read with nsenter.
func hostname(ofPID process: ProcessIdentity) throws -> String {
    try Spawn.run(["/usr/bin/nsenter", "-t", String(process.pid), "-u", "/bin/hostname"]).stdout.trimmingCharacters()
}

/// Destroys what `manifests` (written outside the installation's directory) and the
/// installation's own manifests declare, then nothing may be left (`Installation.finish`).
func destroy(_ installation: Installation, manifests: [String], sourceLocation: SourceLocation = #_sourceLocation) {
    for manifest in manifests where Files.exists(manifest) { installation.track(manifest) }
    installation.finish(sourceLocation: sourceLocation)
}
