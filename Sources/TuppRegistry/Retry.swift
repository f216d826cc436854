import Glibc
import TuppSystem

/// When to try a request again: on 429 and 5xx answers and on dropped connections, with
/// exponential backoff. Attempts that moved bytes forward reset the count, so a long
/// download on a flaky link keeps going while a dead server is given up on.
public struct RetryPolicy: Sendable, Equatable {
    /// Failed attempts in a row before giving up.
    public var attempts: Int
    public var initialDelay: Double
    public var maximumDelay: Double

    public init(attempts: Int = 6, initialDelay: Double = 0.25, maximumDelay: Double = 8) {
        self.attempts = attempts
        self.initialDelay = initialDelay
        self.maximumDelay = maximumDelay
    }

    /// Seconds to wait after failed attempt `failure` (1-based): the doubling delay, or
    /// what the server asked for in Retry-After (seconds form), both capped.
    public func delay(afterFailure failure: Int, retryAfter: String? = nil) -> Double {
        if let retryAfter, let seconds = Double(retryAfter.trimmingCharacters()), seconds >= 0 {
            return min(seconds, maximumDelay * 4)
        }
        let exponent = Double(max(0, failure - 1))
        return min(initialDelay * pow(2, exponent), maximumDelay)
    }

    /// HTTP statuses worth another try.
    public static func isTransient(status: Int) -> Bool {
        status == 429 || status == 500 || status == 502 || status == 503 || status == 504 || status == 408
    }

    static func sleep(_ seconds: Double) {
        guard seconds > 0 else { return }
        var request = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }
}
