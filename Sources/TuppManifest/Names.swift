/// Name rules the kernel and DNS impose.
public enum Names {
    /// A DNS label (RFC 1123): 1–63 of a–z, 0–9, '-', not starting or ending with '-'.
    /// Used for container, image and network names: they become hostnames, paths and
    /// parts of link names.
    public static func dnsLabelProblem(_ name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name.utf8.count > 63 { return "is longer than 63 characters" }
        if !name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-") }) {
            return "may contain only lowercase letters, digits and '-'"
        }
        if name.hasPrefix("-") || name.hasSuffix("-") { return "may not start or end with '-'" }
        return nil
    }

    /// A hostname per RFC 1123: dot-separated labels of letters, digits and '-', at
    /// most 64 bytes (the kernel's HOST_NAME_MAX).
    public static func hostnameProblem(_ name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name.utf8.count > 64 { return "is \(name.utf8.count) bytes; the kernel allows 64" }
        for label in name.split(separator: ".", omittingEmptySubsequences: false) {
            if label.isEmpty { return "has an empty label (\"..\" or a leading/trailing dot)" }
            if label.utf8.count > 63 { return "has a label longer than 63 characters" }
            if !label.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) {
                return "may contain only letters, digits, '-' and '.'"
            }
            if label.hasPrefix("-") || label.hasSuffix("-") { return "has a label starting or ending with '-'" }
        }
        return nil
    }

    /// A network interface name the kernel accepts (dev_valid_name): 1–15 bytes, not
    /// "." or "..", no '/', ':' or whitespace.
    public static func interfaceProblem(_ name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name.utf8.count > 15 { return "is \(name.utf8.count) bytes; the kernel allows 15" }
        if name == "." || name == ".." { return "may not be \".\" or \"..\"" }
        if name.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace }) {
            return "may not contain '/', ':' or whitespace"
        }
        if !name.allSatisfy({ $0.isASCII && !$0.isNewline && $0.asciiValue! > 32 && $0.asciiValue! < 127 }) {
            return "must be printable ASCII"
        }
        return nil
    }

    /// A project name, as Compose accepts one: 1–63 of a–z, 0–9, '-' and '_', starting
    /// with a letter or digit.
    public static func projectProblem(_ name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name.utf8.count > 63 { return "is longer than 63 characters" }
        if !name.allSatisfy({ $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == "_") }) {
            return "may contain only lowercase letters, digits, '-' and '_'"
        }
        if !(name.first!.isLowercase || name.first!.isNumber) { return "must start with a lowercase letter or a digit" }
        return nil
    }

    /// The project a directory name stands for when no file says (Compose's rule): the
    /// name lowercased, without the characters a project name may not hold; "default"
    /// when nothing is left.
    public static func project(fromDirectory name: String) -> String {
        let kept = name.lowercased().filter { $0.isASCII && ($0.isLowercase || $0.isNumber || $0 == "-" || $0 == "_") }
        let trimmed = kept.drop { $0 == "-" || $0 == "_" }
        return trimmed.isEmpty ? "default" : String(trimmed.prefix(63))
    }

    /// Why `name` cannot stand in /etc/hosts, or nil: dot-separated labels of letters,
    /// digits, '-' and '_' (common in service names), at most 253 bytes.
    public static func hostsEntryProblem(_ name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name.utf8.count > 253 { return "is longer than 253 bytes" }
        // Bytes, not Characters: every container's /etc/hosts checks every peer's name
        // (1,000 containers on a network: a million checks per apply).
        for label in name.utf8.split(separator: UInt8(ascii: "."), omittingEmptySubsequences: false) {
            if label.isEmpty { return "has an empty label (\"..\" or a leading/trailing dot)" }
            if label.count > 63 { return "has a label longer than 63 characters" }
            if !label.allSatisfy({ byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "0")...UInt8(ascii: "9"),
                     UInt8(ascii: "-"), UInt8(ascii: "_"): true
                default: false
                }
            }) {
                return "may contain only letters, digits, '-', '_' and '.'"
            }
            if label.first == UInt8(ascii: "-") || label.last == UInt8(ascii: "-") { return "has a label starting or ending with '-'" }
        }
        return nil
    }
}
