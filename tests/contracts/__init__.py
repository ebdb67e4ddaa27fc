"""Contract suites, one per protocol, reused by every backend (DESIGN: a new backend is one file, one
registry entry and one test class that reuses its protocol's contract).

A backend's test class subclasses the protocol's contract and provides the backend as a fixture:
`EncoderContract` (embedders and query encoders), `RerankerContract`, `JobStoreContract`; the
support-judge contract is `tests.openscholar.judge_contract.SupportJudgeContract`.
"""
