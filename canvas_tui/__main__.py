from canvas_tui.cli import main

raise SystemExit(main())
