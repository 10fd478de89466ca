"""``netim bench``: the load generator.

Several load processes (``worker``), each with its own reactor loop and
its share of the devices (``device``: one logged-in connection each),
driven by a runner (``runner``) that starts them together, samples the
server's CPU and memory, and adds up what they measured (``recorder``:
HDR histograms) and what they received (``integrity``: every
acknowledged message once, in order, at every recipient). ``config``
holds the scenarios and their bounds, ``report`` the table, Markdown,
JSON and chart, ``cli`` the command line.
"""
