"""The station's roster room: the site's roster CSV made into a signed bundle and published to the doors."""
