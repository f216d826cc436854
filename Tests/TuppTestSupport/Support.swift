import TuppSystem
