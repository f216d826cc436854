import Testing
import TuppRuntime

/// DIR/log with DIR/log.times as lines with the time each was written.
@Suite struct LogLinesTests {
    let bytes = Array("one\ntwo\nthree\npartial".utf8)

    @Test func aLineTakesTheTimeOfTheWriteHoldingItsFirstByte() {
        // Writes at offsets 0 ("one\ntw") and 6 ("o\nthree\npartial").
        let lines = LogLines.lines(bytes, times: LogLines.parseTimes("0 100.5\n6 102.25\nnot a line\n"))
        #expect(lines.map { String(decoding: $0.bytes, as: UTF8.self) } == ["one\n", "two\n", "three\n", "partial"])
        #expect(lines.map(\.time) == [100.5, 100.5, 102.25, 102.25], "two began in the first write")
        #expect(LogLines.lines(bytes, times: []).allSatisfy { $0.time == nil }, "a log without times")
    }

    @Test func tailAndSinceSelect() {
        let lines = LogLines.lines(bytes, times: [(0, 100), (8, 200)])
        #expect(LogLines.select(lines, LogSelection(tail: 2)).map(\.bytes) == [Array("three\n".utf8), Array("partial".utf8)])
        #expect(LogLines.select(lines, LogSelection(since: 150)).count == 2)
        #expect(LogLines.select(lines, LogSelection(tail: 1, since: 50)).map(\.time) == [200])
        #expect(LogLines.select(lines, LogSelection(tail: 0)).isEmpty)
    }

    @Test func timestampsAreRFC3339InUTC() {
        #expect(LogLines.rfc3339(0) == "1970-01-01T00:00:00.000000Z")
        #expect(LogLines.rfc3339(1_796_034_839.5415) == "2026-11-30T10:33:59.541500Z")
        let line = LogLines.Line(time: 1.25, bytes: Array("x\n".utf8))
        #expect(String(decoding: LogLines.render(line, timestamps: true), as: UTF8.self) == "1970-01-01T00:00:01.250000Z x\n")
        #expect(LogLines.render(line, timestamps: false) == Array("x\n".utf8))
    }
}
