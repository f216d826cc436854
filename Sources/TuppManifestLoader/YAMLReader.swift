import CYAML
import TuppBase
import TuppManifest

/// Limits that keep hostile input cheap to reject.
public struct YAMLLimits: Sendable {
    /// Largest accepted file.
    public var maxBytes = 4 << 20
    /// Deepest nesting of mappings and lists.
    public var maxDepth = 64
    /// Total nodes after alias expansion: a "billion laughs" document hits this long
    /// before it costs memory.
    public var maxNodes = 200_000
    /// Keys in one mapping.
    public var maxKeys = 10_000

    public init() {}
}

/// Reads YAML documents into `Node` trees through libyaml's event API, keeping each
/// node's line:column and enforcing `YAMLLimits`.
public enum YAMLReader {
    /// Every document in `source`. Errors carry the position libyaml reports.
    public static func documents(_ source: [UInt8], limits: YAMLLimits = YAMLLimits()) throws(LocatedError) -> [(node: Node?, mark: Mark)] {
        guard source.count <= limits.maxBytes else {
            throw LocatedError(Mark(line: 1, column: 1),
                               "file is \(source.count) bytes; manifests are limited to \(limits.maxBytes) bytes")
        }
        var parser = yaml_parser_t()
        guard yaml_parser_initialize(&parser) == 1 else {
            throw LocatedError(Mark(line: 1, column: 1), "cannot initialise the YAML parser (out of memory)")
        }
        defer { yaml_parser_delete(&parser) }

        // libyaml keeps a pointer to the input: it must stay alive until the parser is deleted.
        let input = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: max(source.count, 1))
        defer { input.deallocate() }
        _ = input.initialize(from: source)
        yaml_parser_set_input_string(&parser, input.baseAddress, source.count)

        var builder = TreeBuilder(limits: limits)
        while true {
            var event = yaml_event_t()
            guard yaml_parser_parse(&parser, &event) == 1 else {
                throw parserError(&parser, source: source)
            }
            defer { yaml_event_delete(&event) }
            let done = event.type == YAML_STREAM_END_EVENT
            try builder.consume(&event)
            if done { break }
        }
        return builder.documents
    }

    static func parserError(_ parser: inout yaml_parser_t, source: [UInt8]) -> LocatedError {
        let problem = parser.problem.map { String(cString: $0) } ?? "invalid YAML"
        let context = parser.context.map { String(cString: $0) }
        if parser.error == YAML_READER_ERROR {
            // Reader errors (bad UTF-8, control characters) carry a byte offset, not a mark.
            let mark = markFor(offset: parser.problem_offset, in: source)
            var text = problem
            if parser.problem_value != -1 { text += " (byte 0x" + String(parser.problem_value, radix: 16, uppercase: true) + ")" }
            if problem.contains("UTF-8") { text = "invalid UTF-8: \(text)" }
            return LocatedError(mark, text)
        }
        let mark = Mark(line: Int(parser.problem_mark.line) + 1, column: Int(parser.problem_mark.column) + 1)
        var text = "YAML syntax error: \(problem)"
        if let context {
            let at = Mark(line: Int(parser.context_mark.line) + 1, column: Int(parser.context_mark.column) + 1)
            text += " (\(context) at \(at))"
        }
        return LocatedError(mark, text)
    }

    static func markFor(offset: Int, in source: [UInt8]) -> Mark {
        var line = 1, column = 1
        for byte in source.prefix(offset) {
            if byte == UInt8(ascii: "\n") { line += 1; column = 1 } else if byte & 0xC0 != 0x80 { column += 1 }
        }
        return Mark(line: line, column: column)
    }
}

/// Builds trees from the event stream: a stack of open collections.
private struct TreeBuilder {
    let limits: YAMLLimits
    var documents: [(node: Node?, mark: Mark)] = []
    var documentMark = Mark(line: 1, column: 1)
    var anchors: [String: (node: Node, size: Int)] = [:]
    var nodeCount = 0

    enum Open {
        case mapping(mark: Mark, tag: String?, anchor: String?, items: [(key: Node, value: Node)], pendingKey: Node?, seen: [String: Mark])
        case sequence(mark: Mark, tag: String?, anchor: String?, items: [Node])
    }
    var stack: [Open] = []
    var sizes: [Int] = []   // nodes inside each open collection, for anchor sizes
    var root: Node?

    init(limits: YAMLLimits) { self.limits = limits }

    static func string(_ pointer: UnsafeMutablePointer<yaml_char_t>?) -> String? {
        guard let pointer else { return nil }
        return String(cString: UnsafeRawPointer(pointer).assumingMemoryBound(to: CChar.self))
    }

    mutating func consume(_ event: inout yaml_event_t) throws(LocatedError) {
        let mark = Mark(line: Int(event.start_mark.line) + 1, column: Int(event.start_mark.column) + 1)
        switch event.type {
        case YAML_DOCUMENT_START_EVENT:
            root = nil
            documentMark = mark
            anchors = [:]
        case YAML_DOCUMENT_END_EVENT:
            documents.append((root, documentMark))
        case YAML_SCALAR_EVENT:
            let s = event.data.scalar
            let text = String(decoding: UnsafeBufferPointer(start: s.value, count: s.length), as: UTF8.self)
            let plain = s.style == YAML_PLAIN_SCALAR_STYLE
            let node = Node(.scalar(text, plain: plain), mark: mark, tag: Self.string(s.tag))
            try add(node, size: 1, anchor: Self.string(s.anchor))
        case YAML_ALIAS_EVENT:
            let name = Self.string(event.data.alias.anchor) ?? ""
            guard let target = anchors[name] else {
                throw LocatedError(mark, "alias *\(name) refers to an anchor that is not defined before it")
            }
            try add(Node(target.node.value, mark: mark, tag: target.node.tag), size: target.size, anchor: nil)
        case YAML_MAPPING_START_EVENT:
            try open(.mapping(mark: mark, tag: Self.string(event.data.mapping_start.tag),
                              anchor: Self.string(event.data.mapping_start.anchor), items: [], pendingKey: nil, seen: [:]), at: mark)
        case YAML_SEQUENCE_START_EVENT:
            try open(.sequence(mark: mark, tag: Self.string(event.data.sequence_start.tag),
                               anchor: Self.string(event.data.sequence_start.anchor), items: []), at: mark)
        case YAML_MAPPING_END_EVENT, YAML_SEQUENCE_END_EVENT:
            guard let top = stack.popLast(), let size = sizes.popLast() else { return }
            switch top {
            case .mapping(let m, let tag, let anchor, let items, _, _):
                try add(Node(.mapping(items), mark: m, tag: tag), size: size + 1, anchor: anchor, counted: true)
            case .sequence(let m, let tag, let anchor, let items):
                try add(Node(.sequence(items), mark: m, tag: tag), size: size + 1, anchor: anchor, counted: true)
            }
        default:
            break
        }
    }

    mutating func open(_ collection: Open, at mark: Mark) throws(LocatedError) {
        guard stack.count < limits.maxDepth else {
            throw LocatedError(mark, "nesting deeper than \(limits.maxDepth) levels")
        }
        stack.append(collection)
        sizes.append(0)
    }

    /// Attaches a finished node to its parent. `size` counts the nodes it stands for
    /// (an alias stands for its whole anchored subtree).
    mutating func add(_ node: Node, size: Int, anchor: String?, counted: Bool = false) throws(LocatedError) {
        if !counted {
            nodeCount += size
            guard nodeCount <= limits.maxNodes else {
                throw LocatedError(node.mark, "document expands to more than \(limits.maxNodes) nodes (alias expansion bomb?)")
            }
        }
        if let anchor { anchors[anchor] = (node, size) }
        if !sizes.isEmpty { sizes[sizes.count - 1] += size }
        guard var top = stack.popLast() else {
            root = node
            return
        }
        // `top` gives up its arrays before they grow: otherwise each append copies the
        // whole collection, and a list at the node limit takes minutes instead of milliseconds.
        switch top {
        case .sequence(let m, let tag, let a, var items):
            top = .sequence(mark: m, tag: tag, anchor: a, items: [])
            items.append(node)
            top = .sequence(mark: m, tag: tag, anchor: a, items: items)
        case .mapping(let m, let tag, let a, var items, let pending, var seen):
            top = .mapping(mark: m, tag: tag, anchor: a, items: [], pendingKey: nil, seen: [:])
            if let key = pending {
                items.append((key, node))
                top = .mapping(mark: m, tag: tag, anchor: a, items: items, pendingKey: nil, seen: seen)
            } else {
                guard case .scalar(let text, _) = node.value else {
                    throw LocatedError(node.mark, "mapping keys must be plain strings, not \(node.kindDescription)")
                }
                if let first = seen[text] {
                    throw LocatedError(node.mark, "duplicate key \"\(text)\" (first defined at line \(first.line))")
                }
                guard seen.count < limits.maxKeys else {
                    throw LocatedError(node.mark, "more than \(limits.maxKeys) keys in one mapping")
                }
                seen[text] = node.mark
                top = .mapping(mark: m, tag: tag, anchor: a, items: items, pendingKey: node, seen: seen)
            }
        }
        stack.append(top)
    }
}
