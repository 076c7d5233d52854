"""Adapters for the frameworks applications reach LAM through; each is an optional extra:
`langchain` (pip install 'lam[langchain]'), `llamaindex` ('lam[llamaindex]'), `mcp`
('lam[mcp]'). Import the submodule you need; this package imports none of them."""
